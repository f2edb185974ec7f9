// The lm_head_ce rewrite of a loss through `self.loss_function` (current transformers): the
// fixture's labelled sites are rewritten under the run-time check `_adopt.causal_lm_loss`,
// with the helper's keywords handed to it as the code passes them. Under the test
// environment's transformers 4.35 the fixture's models use their own losses, which the check
// does not take, and the original code runs; in the torch-2 environment (transformers 5.x,
// made by scripts/setup-torch2.sh) the check takes transformers' own helpers, the rewritten
// models verify through the kernel, and a rewrite handing the kernel the wrong shift is caught.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../src/pipeline/index.js';
import { readMarkers } from '../src/bench/labels.js';
import { loadRules } from '../src/match/rule.js';
import { TORCH2_PYTHON } from '../src/bench/real-verify.js';
import { adopt, repoRoot } from './helpers/cli.js';

const FIXTURE = join(repoRoot, 'fixtures', 'models', 'lm_loss_function.py');
const TORCH2 = join(repoRoot, TORCH2_PYTHON);
// current transformers' LLaMA, as bench:real installs it into the cache
const LLAMA = join(repoRoot, '.cache', 'real', 'transformers-5.25.0', 'src', 'transformers', 'models', 'llama', 'modeling_llama.py');

function rewritten(): { text: string; sites: ReturnType<typeof runRewrite>['sites'] } {
  const run = runRewrite([FIXTURE], { rules: 'lm_head_ce' });
  return { text: run.files[0].rewritten, sites: run.sites.filter((s) => s.rule === 'lm_head_ce') };
}

function written(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'adopt-lossfn-'));
  const path = join(dir, 'lm_loss_function.py');
  writeFileSync(path, text);
  return path;
}

function verify(after: string, cls: string, env: Record<string, string> = {}): { code: number; out: { status: string; fast_path_calls?: number } } {
  const r = adopt(['verify', FIXTURE, after, '--class', cls, '--shape', '2,7,16', '--json'], { env });
  return { code: r.code, out: JSON.parse(r.stdout) };
}

describe('lm_head_ce through self.loss_function', () => {
  it('every labelled site of the fixture is rewritten under the run-time check of the helper', () => {
    const labels = readMarkers(FIXTURE, readFileSync(FIXTURE, 'utf8'), new Set(loadRules().map((r) => r.name))).filter((l) => l.kind === 'site' && l.rule === 'lm_head_ce');
    const { text, sites } = rewritten();
    expect(labels.length).toBe(4);
    expect(sites.map((s) => s.lines[0]).sort()).toEqual(labels.map((l) => l.lines[0]).sort());
    for (const s of sites) expect(s.decision, s.reason).toBe('rewritten');
    // the kept positions' hidden states, the keywords through **, and those named in the call
    expect(text).toContain('(_adopt_lm_loss := _adopt.causal_lm_loss(self.loss_function, self.lm_head, self.vocab_size, kwargs)) is not None');
    expect(text).toContain('hidden_states[:, slice_indices, :],');
    expect(text).toContain('_adopt.causal_lm_loss(self.loss_function, self.lm_head, self.vocab_size, {"num_items_in_batch": num_items_in_batch})');
    expect(text).toContain('_adopt.causal_lm_loss(self.loss_function, self.generator_lm_head, self.vocab_size, kwargs)');
  }, 120_000);

  it('with transformers 4.35 the models\' own losses run: the rewritten file still verifies', () => {
    const after = written(rewritten().text);
    for (const cls of ['TinyForCausalLM', 'TinyForMaskedLM']) {
      const { code, out } = verify(after, cls);
      expect(code, JSON.stringify(out)).toBe(0);
      expect(out.status).toBe('verified');
    }
  }, 300_000);

  it.skipIf(!existsSync(TORCH2))('with transformers 5.x the helpers are taken and the kernel computes what they do', () => {
    const env = { PYTHONPATH: [join(repoRoot, 'native'), join(repoRoot, 'native', 'tests')].join(':') };
    const check = spawnSync(TORCH2, [join(repoRoot, 'native', 'tests', 'loss_helpers_real.py')], { encoding: 'utf8', env: { ...process.env, ...env } });
    expect(check.status, check.stderr).toBe(0);
    const text = rewritten().text;
    const after = written(text);
    const torch2 = { ADOPT_PYTHON: TORCH2 };
    for (const cls of ['TinyForCausalLM', 'TinyForMaskedLM']) {
      const { code, out } = verify(after, cls, torch2);
      expect(code, JSON.stringify(out)).toBe(0);
      expect(out.status).toBe('verified');
      expect(out.fast_path_calls ?? 0).toBeGreaterThan(0);
    }
    // the kernel handed the masked-LM setting for a causal LM (the file's first site): the check must see it
    const wrong = written(text.replace('**_adopt_lm_loss,', '**dict(_adopt_lm_loss, shift=False),'));
    const bad = verify(wrong, 'TinyForCausalLM', torch2);
    expect(bad.code).toBe(1);
    expect(bad.out.status).toBe('mismatch');
  }, 600_000);

  it.skipIf(!existsSync(TORCH2) || !existsSync(LLAMA))('transformers\' own LlamaForCausalLM, rewritten, computes what the original does through the kernel', () => {
    const run = runRewrite([LLAMA], { rules: 'lm_head_ce' });
    expect(run.sites.filter((s) => s.rule === 'lm_head_ce').map((s) => s.decision)).toEqual(['rewritten']);
    const after = written(run.files[0].rewritten);
    const env = { ...process.env, PYTHONPATH: join(repoRoot, 'native') };
    const check = (file: string) => spawnSync(TORCH2, [join(repoRoot, 'native', 'tests', 'hf_causal_lm_check.py'), file], { encoding: 'utf8', env });
    const good = check(after);
    expect(good.status, good.stderr.slice(-2000)).toBe(0);
    // the check sees the kernel handed the wrong shift
    const wrong = written(run.files[0].rewritten.replace('**_adopt_lm_loss,', '**dict(_adopt_lm_loss, shift=False),'));
    expect(check(wrong).status).not.toBe(0);
  }, 300_000);
});
