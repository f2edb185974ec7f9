// linear_gelu on a GELU imported by name: RoBERTa's LM head calls transformers' module-level
// `gelu` (an activation object, not a submodule). The rewrite's guard asks at run time what the
// name holds: transformers' GELU runs the compiled kernel and verifies; another activation
// bound to the name runs the original code. transformers comes from .cache/pydeps (4.35).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../src/pipeline/index.js';
import { adopt, repoRoot } from './helpers/cli.js';

const FIXTURE = join(repoRoot, 'fixtures', 'models', 'roberta_lm_head.py');
const env = { PYTHONPATH: join(repoRoot, '.cache', 'pydeps') };

function verify(original: string, rewritten: string): { status: string; compiled_calls?: number } {
  const r = adopt(['verify', original, rewritten, '--class', 'RobertaStyleLMHead', '--shape', '2,7,32', '--json'], { env });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

describe('linear_gelu on a GELU imported by name', () => {
  it('is rewritten under a guard on what the name holds, and verifies through the kernel', () => {
    const run = runRewrite([FIXTURE], { rules: 'linear_gelu' });
    const [site] = run.sites.filter((s) => s.rule === 'linear_gelu');
    expect(site?.decision, site?.reason).toBe('rewritten');
    const text = run.files[0].rewritten;
    expect(text).toContain('_adopt.gelu_kind(gelu) is not None');
    const dir = mkdtempSync(join(tmpdir(), 'adopt-gelu-name-'));
    const after = join(dir, 'roberta_lm_head.py');
    writeFileSync(after, text);
    const good = verify(FIXTURE, after);
    expect(good.status).toBe('verified');
    expect(good.compiled_calls ?? 0).toBeGreaterThan(0);
    // another activation under the name: the guard sends it to the original code
    const swap = (t: string) => t.replace('from transformers.activations import gelu', 'from transformers.activations import quick_gelu as gelu');
    const original = join(dir, 'quick.py');
    const rewritten = join(dir, 'quick_after.py');
    writeFileSync(original, swap(readFileSync(FIXTURE, 'utf8')));
    writeFileSync(rewritten, swap(text));
    const other = verify(original, rewritten);
    expect(other.status).toBe('verified');
    expect(other.compiled_calls ?? 0).toBe(0);
  }, 240_000);
});
