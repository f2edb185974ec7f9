import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cachedVerdict, harnessHash, isTransient, verdictKey, VerdictCache, type VerdictContext } from '../../src/bench/real-verdict-cache.js';
import { verifyRewritten, type Checker, type RealVerdict } from '../../src/bench/real-verify.js';

const scratch = () => mkdtempSync(join(tmpdir(), 'adopt-verdicts-'));
const ctx: VerdictContext = { harness: 'h1', python: '/venv/bin/python', torch: '2.14.1', options: '{"dtype":"fp64"}' };
const ORIGINAL = 'class M(nn.Module): ...\n';
const REWRITTEN = 'import adopt_kernels as _adopt\nclass M(nn.Module): ...\n';

/** A harness stand-in that counts its runs and answers `status` for one class. */
function countingChecker(status: 'verified' | 'mismatch' | 'not_runnable', reason?: string): Checker & { runs: number } {
  const check = ((_path, variants) => {
    check.runs++;
    return { ok: true, torch: '2.14.1', results: Object.keys(variants).map((variant) => ({ class: 'M', variant, status, ...(reason ? { reason } : {}), fast_path_calls: 3 })) };
  }) as Checker & { runs: number };
  check.runs = 0;
  return check;
}

async function verifyThrough(cache: VerdictCache, check: Checker, original = ORIGINAL, rewritten = REWRITTEN, context = ctx) {
  const key = verdictKey('pkg==1:pkg/m.py', original, rewritten, context);
  return cachedVerdict(cache, key, () => verifyRewritten({ key: 'pkg==1:pkg/m.py', path: '/x/pkg/m.py', rewritten, rules: ['rmsnorm'], alone: () => 'alone' }, check));
}

describe('bench:real verdict cache', () => {
  it('a miss runs the harness and keeps the verdict; the same file again is a hit, also for a later run reading the file', async () => {
    const path = join(scratch(), 'sub', 'verdicts.jsonl');
    const check = countingChecker('verified');
    const first = new VerdictCache(path);
    const a = await verifyThrough(first, check);
    expect(a.cached).toBe(false);
    expect(check.runs).toBe(1);
    const b = await verifyThrough(first, check);
    expect(b).toEqual({ verdict: a.verdict, cached: true });
    expect(check.runs).toBe(1);
    // a later run reads the file back
    const later = new VerdictCache(path);
    expect(later.size).toBe(1);
    const c = await verifyThrough(later, check);
    expect(c.cached).toBe(true);
    expect(c.verdict).toEqual(a.verdict);
    expect(check.runs).toBe(1);
    expect([later.hits, later.misses]).toEqual([1, 0]);
  });

  it('any change to the original, the rewrite, the harness, the interpreter or torch is a miss', async () => {
    const cache = new VerdictCache(join(scratch(), 'v.jsonl'));
    const check = countingChecker('verified');
    await verifyThrough(cache, check);
    const changed: [string, string, VerdictContext][] = [
      [ORIGINAL + '# edited\n', REWRITTEN, ctx],
      [ORIGINAL, REWRITTEN + '# edited\n', ctx],
      [ORIGINAL, REWRITTEN, { ...ctx, harness: 'h2' }],
      [ORIGINAL, REWRITTEN, { ...ctx, python: '/other/bin/python' }],
      [ORIGINAL, REWRITTEN, { ...ctx, torch: '2.15.0' }],
      [ORIGINAL, REWRITTEN, { ...ctx, options: '{"dtype":"fp32"}' }],
    ];
    for (const [o, r, c] of changed) expect((await verifyThrough(cache, check, o, r, c)).cached).toBe(false);
    expect(check.runs).toBe(1 + changed.length);
    expect(verdictKey('a:1', 'x', 'y', ctx)).not.toBe(verdictKey('a:2', 'x', 'y', ctx));
    // length-prefixed parts: moving text from one part to the next is a different key
    expect(verdictKey('f', 'ab', 'c', ctx)).not.toBe(verdictKey('f', 'a', 'bc', ctx));
  });

  it('the harness hash changes with any file under the harness directories, and with nothing else', async () => {
    const root = scratch();
    mkdirSync(join(root, 'adopt_harness', '__pycache__'), { recursive: true });
    writeFileSync(join(root, 'adopt_harness', 'sizes.py'), 'A = 1\n');
    mkdirSync(join(root, 'adopt_kernels'));
    writeFileSync(join(root, 'adopt_kernels', 'norms.py'), 'def f(): pass\n');
    const dirs = [join(root, 'adopt_harness'), join(root, 'adopt_kernels')];
    const before = harnessHash(dirs);
    writeFileSync(join(root, 'adopt_harness', '__pycache__', 'sizes.cpython-311.pyc'), 'bytecode');
    expect(harnessHash(dirs)).toBe(before);
    writeFileSync(join(root, 'adopt_harness', 'sizes.py'), 'A = 2\n');
    const edited = harnessHash(dirs);
    expect(edited).not.toBe(before);
    writeFileSync(join(root, 'adopt_kernels', 'new.py'), '');
    expect(harnessHash(dirs)).not.toBe(edited);
  });

  it('a verdict from a time limit or a killed harness is not kept', async () => {
    const path = join(scratch(), 'v.jsonl');
    const cache = new VerdictCache(path);
    const check = countingChecker('not_runnable', 'timed out after 60s');
    const v = await verifyThrough(cache, check);
    expect(v.verdict.status).toBe('not_runnable');
    expect(isTransient(v.verdict)).toBe(true);
    expect((await verifyThrough(cache, check)).cached).toBe(false);
    expect(check.runs).toBe(2);
    expect(new VerdictCache(path).size).toBe(0);
    // a reason that is about the model, not the machine, is kept
    const kept = countingChecker('not_runnable', "cannot build M: no value for its parameter 'base'");
    await verifyThrough(cache, kept);
    expect((await verifyThrough(cache, kept)).cached).toBe(true);
    expect(kept.runs).toBe(1);
  });

  it('a torn or foreign line is skipped, never trusted; the last verdict of a key wins', async () => {
    const path = join(scratch(), 'v.jsonl');
    const cache = new VerdictCache(path);
    await verifyThrough(cache, countingChecker('verified'));
    const key = verdictKey('pkg==1:pkg/m.py', ORIGINAL, REWRITTEN, ctx);
    const newer: RealVerdict = { file: 'pkg==1:pkg/m.py', status: 'mismatch', rules: ['rmsnorm'], classes: { verified: 0, mismatch: 1, not_runnable: 0 }, fast_path_calls: 1, compiled_calls: 0 };
    appendFileSync(path, `{"key":"${key}","file":"pkg==1:pkg/m.py","verdict":{"status":"verif\n{"not":"an entry"}\n`);
    appendFileSync(path, `${JSON.stringify({ key, file: newer.file, verdict: newer })}\n`);
    const read = new VerdictCache(path);
    expect(read.skippedLines).toEqual([2, 3]);
    expect(read.get(key)).toEqual(newer);
    expect(readFileSync(path, 'utf8').split('\n').filter(Boolean)).toHaveLength(4);
  });

  it('without a cache every verification runs', async () => {
    const check = countingChecker('verified');
    const run = async () => await cachedVerdict(undefined, 'k', () => verifyRewritten({ key: 'k', path: '/x/m.py', rewritten: REWRITTEN, rules: [], alone: () => '' }, check));
    expect((await run()).cached).toBe(false);
    expect((await run()).cached).toBe(false);
    expect(check.runs).toBe(2);
  });
});
