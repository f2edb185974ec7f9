// The lm_head_ce rewrite: the LM head and its cross-entropy become one call of the fused kernel
// that also returns the logits. Its examples (with labels fed, so the loss runs) rewrite as
// expected and verify in torch with the compiled kernel; the fixture's labelled sites are all
// rewritten; a rewrite with the wrong shift is caught by the check; the forms the kernel would
// compute differently are listed with the reason.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../src/pipeline/index.js';
import { readMarkers } from '../src/bench/labels.js';
import { loadRules } from '../src/match/rule.js';
import { adopt, repoRoot } from './helpers/cli.js';

const FORMS = join(repoRoot, 'fixtures', 'models', 'lm_head_forms.py');
const AFTER = join(repoRoot, 'rules', 'lm_head_ce', 'cases', 'lm_head_forms.after.py');

describe('lm_head_ce rewrite', () => {
  it('its examples rewrite as expected and verify in torch; its refuse cases are refused', () => {
    const r = adopt(['rules', 'test', 'lm_head_ce']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ 0 failed/);
    expect(r.stdout).toMatch(/refuse\/loss_forms\.py/);
  }, 300_000);

  it('every labelled site of the fixture is rewritten into the kernel returning the logits', () => {
    const labels = readMarkers(FORMS, readFileSync(FORMS, 'utf8'), new Set(loadRules().map((r) => r.name))).filter((l) => l.kind === 'site' && l.rule === 'lm_head_ce');
    const run = runRewrite([FORMS], { rules: 'lm_head_ce' });
    const sites = run.sites.filter((s) => s.rule === 'lm_head_ce');
    expect(labels.length).toBe(3);
    expect(sites.map((s) => s.lines[0]).sort()).toEqual(labels.map((l) => l.lines[0]).sort());
    for (const s of sites) expect(s.decision, s.reason).toBe('rewritten');
    const text = run.files[0].rewritten;
    expect(text).toContain('loss, logits = _adopt.linear_cross_entropy(');
    expect(text).toContain('logits_dtype=torch.float32');
    expect(text).toMatch(/ignore_index=3,\s+shift=False,\s+reduction="sum"/);
  }, 120_000);

  it('the check runs the compiled kernel, and catches a rewrite with the wrong shift', () => {
    const ok = adopt(['verify', FORMS, AFTER, '--class', 'FloatLogitsLM', '--shape', '2,7,16', '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    const good = JSON.parse(ok.stdout);
    expect(good.status).toBe('verified');
    expect(good.compiled_kernels?.linear_cross_entropy ?? 0).toBeGreaterThan(0);
    const dir = mkdtempSync(join(tmpdir(), 'adopt-lmce-'));
    const wrong = join(dir, 'wrong.py');
    writeFileSync(wrong, readFileSync(AFTER, 'utf8').replace('shift=True', 'shift=False'));
    const bad = adopt(['verify', FORMS, wrong, '--class', 'FloatLogitsLM', '--shape', '2,7,16', '--json']);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout).status).toBe('mismatch');
  }, 120_000);

  it('--why-not names what keeps a loss from the kernel', () => {
    const file = join(repoRoot, 'rules', 'lm_head_ce', 'refuse', 'loss_forms.py');
    const run = runRewrite([file], { rules: 'lm_head_ce', whyNot: true });
    const reasons = run.sites.filter((s) => s.rule === 'lm_head_ce').map((s) => `${s.decision}: ${s.reason}`);
    expect(reasons).toHaveLength(6);
    for (const want of [/soft-capping/, /class weights/, /label smoothing/, /through \* or \*\*/, /shifted by one position but the labels are not/, /on one path before the loss/]) {
      expect(reasons.some((r) => r.startsWith('skipped') && want.test(r)), `${want} in ${reasons.join('\n')}`).toBe(true);
    }
  }, 120_000);
});
