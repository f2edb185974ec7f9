// bench:real — adopt on current model code from pinned PyPI packages, scored against hand-written
// labels (fixtures/real/labels.json): location-level precision and recall per category, in two
// views (found: listed with any decision; rewritten), then every rewritten file verified in torch
// 2.x (real-verify.ts; --python PATH, else the venv scripts/setup-torch2.sh makes; --no-verify
// skips it), each verdict kept in a cache keyed by what it depends on (real-verdict-cache.ts;
// --cache FILE, --no-cache). adopt runs as a subprocess through its CLI, one file at a time.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pct, round } from './format.js';
import { ensurePackage } from './real-corpus.js';
import { labelsPath, readLabels } from './real-labels.js';
import { anchorMismatches, rewrittenOrInside, scoreView, type LabelledFile, type ListedSite, type ViewScore } from './real-score.js';
import { verdictLine, verifyRewritten, type RealVerdict } from './real-verify.js';
import { cachedVerdict, verdictKey } from './real-verdict-cache.js';
import { defaultVerdictCache, setUpVerification, type Verification } from './real-verify-setup.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ADOPT = join(ROOT, 'bin', 'adopt.js');
const OUT = 'bench-results';

interface CliRun { sites: ListedSite[] }

/** `adopt rewrite FILE --json ...`; the parsed JSON, or the reason it could not run. */
function adopt(file: string, extra: string[], env: NodeJS.ProcessEnv, timeoutMs: number): CliRun | string {
  const r = spawnSync(process.execPath, [ADOPT, 'rewrite', file, '--json', '--no-learned', ...extra], { encoding: 'utf8', env, timeout: timeoutMs, maxBuffer: 1 << 28 });
  if (r.error) return `${r.error.message}`;
  if (r.status !== 0 && r.status !== 1) return `exit ${r.status}: ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' ')}`;
  try {
    const run = JSON.parse(r.stdout) as CliRun;
    return { ...run, sites: run.sites.map((s) => ({ ...s, file: resolve(s.file) })) };
  } catch {
    return `unreadable output: ${(r.stderr ?? '').trim().split('\n').pop()}`;
  }
}

function printView(name: string, v: ViewScore): void {
  console.log(`\n${name}: precision ${pct(v.total.precision)} recall ${pct(v.total.recall)} (${v.total.tp}/${v.total.tp + v.total.fn} labels, ${v.total.fp} listed off-label)`);
  console.log('category                  P       R     found/labels  off-label');
  for (const [c, k] of Object.entries(v.perCategory)) {
    if (!k.tp && !k.fn && !k.fp) continue;
    console.log(`${c.padEnd(24)} ${pct(k.precision)} ${pct(k.recall)} ${String(k.tp).padStart(7)}/${String(k.tp + k.fn).padEnd(6)} ${String(k.fp).padStart(6)}`);
  }
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  if (i < 0) return undefined;
  const v = process.argv[i + 1];
  if (!v || v.startsWith('--')) throw new Error(`${name} needs a value`);
  return v;
}

function labelledFiles(doc: ReturnType<typeof readLabels>): LabelledFile[] {
  const files: LabelledFile[] = [];
  for (const [pin, entries] of Object.entries(doc.packages)) {
    const dir = ensurePackage(pin);
    for (const [rel, labels] of Object.entries(entries)) {
      const path = resolve(dir, rel);
      let source: string;
      try { source = readFileSync(path, 'utf8'); } catch { throw new Error(`${labelsPath(ROOT)}: ${pin} has no file ${rel} (looked for ${path})`); }
      files.push({ key: `${pin}:${rel}`, path, source, sites: labels.sites });
    }
  }
  return files;
}

/** The file as adopt rewrites it with `extra` options, read back from `-o`; or why not. */
function rewrittenText(path: string, extra: string[], scratch: string): string | { error: string } {
  const out = join(scratch, `alone-${process.hrtime.bigint()}.py`);
  const run = adopt(path, [...extra, '-o', out], process.env, 300_000);
  if (typeof run === 'string') return { error: run };
  if (!existsSync(out)) return { error: 'nothing rewritten' };
  const text = readFileSync(out, 'utf8');
  rmSync(out);
  return text;
}

interface VerifyRun { setup: Verification; scratch: string; fromCache: number }

/** A changed file checked as the scoring pass rewrote it (`sites`: what adopt listed in it),
 *  through the verdict cache when there is one. */
async function verifyChanged(f: LabelledFile, text: string, sites: ListedSite[], run: VerifyRun): Promise<RealVerdict> {
  const rules = [...new Set(sites.filter((s) => s.file === f.path && s.decision === 'rewritten').map((s) => s.rule))].sort();
  const { verdict, cached } = await cachedVerdict(run.setup.cache, verdictKey(f.key, f.source, text, run.setup.context), async () => {
    await run.setup.warm();
    return verifyRewritten({ key: f.key, path: f.path, rewritten: text, rules, alone: (rule) => rewrittenText(f.path, ['--rules', rule], run.scratch) });
  });
  if (cached) run.fromCache++;
  process.stderr.write(`  verification${cached ? ' (cached)' : ''}: ${verdictLine(verdict)}\n`);
  return verdict;
}

async function main(): Promise<number> {
  const verify = !process.argv.includes('--no-verify');
  const cache = process.argv.includes('--no-cache') ? null : resolve(argValue('--cache') ?? defaultVerdictCache());
  const doc = readLabels(labelsPath(ROOT));
  // --only A,B: the labelled files whose key contains A or B (a few files, or one package; the figures are then partial)
  const only = argValue('--only')?.split(',');
  const files = labelledFiles(doc).filter((f) => !only || only.some((o) => f.key.includes(o)));
  // checked before the long scoring pass, so a missing torch 2.x is said at once
  const setup = verify ? setUpVerification({ root: ROOT, python: argValue('--python'), cache, files: files.map((f) => f.path) }) : undefined;
  if (setup && !setup.ok) console.error(`bench:real: verification cannot run: ${setup.error}`);
  const canVerify = !!setup?.ok;
  const anchors = anchorMismatches(files);
  for (const m of anchors) console.error(`anchor mismatch: ${m.file}:${m.line} ${m.category}: expected '${m.anchor}', line reads '${m.found}'`);

  const scratch = mkdtempSync(join(tmpdir(), 'adopt-real-'));
  process.env.ADOPT_DB = join(scratch, 'records.jsonl');
  const vrun: VerifyRun | undefined = setup?.ok ? { setup, scratch, fromCache: 0 } : undefined;
  const sites: ListedSite[] = [];
  const changed: LabelledFile[] = [];
  const verification: RealVerdict[] = [];
  const failures: string[] = [];
  let seconds = 0;
  let verifySeconds = 0;
  // each file verified right after it is rewritten, so that an interrupted run has said what it found
  for (const [i, f] of files.entries()) {
    process.stderr.write(`[${i + 1}/${files.length}] ${f.key}\n`);
    const out = join(scratch, `${i}.py`);
    const t0 = performance.now();
    const run = adopt(f.path, ['-o', out], process.env, 300_000);
    seconds += (performance.now() - t0) / 1000;
    if (typeof run === 'string') failures.push(`${f.key}: ${run}`);
    else sites.push(...run.sites);
    if (!existsSync(out)) continue;
    changed.push(f);
    if (!vrun) continue;
    const t1 = performance.now();
    verification.push(await verifyChanged(f, readFileSync(out, 'utf8'), typeof run === 'string' ? [] : run.sites, vrun));
    verifySeconds += (performance.now() - t1) / 1000;
  }
  if (setup?.ok) await setup.stop();
  const labelled = new Set(files.map((f) => f.path));
  const elsewhere = sites.filter((s) => !labelled.has(s.file)).map((s) => `${s.file}:${s.lines[0]}-${s.lines[1]} ${s.rule} ${s.decision}`);
  const found = scoreView(files, sites, () => true);
  const rewritten = scoreView(files, sites, rewrittenOrInside(sites));

  rmSync(scratch, { recursive: true, force: true });
  const count = (s: string) => verification.filter((v) => v.status === s).length;
  // a file verified while its guards sent every call down the original path has not tested the rewrite
  const exercised = verification.filter((v) => v.status === 'verified' && v.fast_path_calls > 0).length;

  const packages = Object.keys(doc.packages).length;
  const labelCount = files.reduce((n, f) => n + f.sites.length, 0);
  console.log(`real-code benchmark: ${files.length} files from ${packages} packages, ${labelCount} labelled sites, adopt listed ${sites.length} sites in ${round(seconds, 1)}s`);
  printView('found (listed with any decision)', found);
  printView('rewritten (a softmax inside a rewritten attention site counts: the attention kernel computes it)', rewritten);
  if (failures.length) console.log(`\nadopt could not run on ${failures.length} files:\n  ${failures.join('\n  ')}`);
  if (elsewhere.length) console.log(`\n${elsewhere.length} sites listed in files outside the labelled set (not scored; see ${OUT}/real.json)`);
  if (!verify) console.log('\nverification skipped (--no-verify)');
  else if (!setup?.ok) console.log(`\nverification not run: ${setup?.error}`);
  else {
    const cached = setup.cache ? `; ${vrun!.fromCache} of ${verification.length} verdicts from the cache ${setup.cache.path}` : '; no verdict cache (--no-cache)';
    console.log(`\nverification (torch ${setup.torch}, ${round(verifySeconds, 0)}s${cached}): ${count('verified')} of ${changed.length} rewritten files verified (${exercised} of them through the fast path), ${count('mismatch')} mismatch, ${count('not_runnable')} not runnable`);
    for (const v of verification) console.log(`  ${v.file}: ${verdictLine(v)}`);
  }
  console.log(`anchor mismatches: ${anchors.length}`);

  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, 'real.json'), JSON.stringify({ found, rewritten, failures, elsewhere, verification, anchor_mismatches: anchors }, null, 1));
  const r4 = (x: number) => round(x, 4);
  const perCategory = Object.fromEntries(Object.keys(found.perCategory).filter((c) => found.perCategory[c].tp + found.perCategory[c].fn + found.perCategory[c].fp > 0).map((c) => [c, {
    labels: found.perCategory[c].tp + found.perCategory[c].fn,
    found_recall: r4(found.perCategory[c].recall), rewritten_recall: r4(rewritten.perCategory[c].recall),
    found_precision: r4(found.perCategory[c].precision), precision: r4(rewritten.perCategory[c].precision),
  }]));

  console.log(JSON.stringify({
    found_recall: r4(found.total.recall), rewritten_recall: r4(rewritten.total.recall), precision: r4(rewritten.total.precision), found_precision: r4(found.total.precision),
    files: files.length, sites: labelCount, packages,
    verified: canVerify ? count('verified') : null, verify_attempted: canVerify ? changed.length : 0, mismatch: canVerify ? count('mismatch') : null, not_runnable: canVerify ? count('not_runnable') : null,
    verified_through_fast_path: canVerify ? exercised : null, fast_path_calls: verification.reduce((a, v) => a + v.fast_path_calls, 0),
    verdicts_from_cache: canVerify ? vrun!.fromCache : null, verify_seconds: canVerify ? round(verifySeconds, 0) : null,
    anchor_mismatches: anchors.length, adopt_failures: failures.length, per_category: perCategory,
  }));
  // verification asked for and unable to run: the figures above are printed, and the run says so
  return setup && !setup.ok ? 2 : 0;
}

if (process.argv[1]?.endsWith('real.js')) {
  try {
    process.exitCode = await main();
  } catch (e) {
    console.error(`bench:real: ${(e as Error).message}`);
    process.exit(2);
  }
}
