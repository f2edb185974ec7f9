// The lm_head_ce rewrite of `self.loss_function(...)`: the run-time check `_adopt.causal_lm_loss`
// reads the helper, the head and the keywords, and its answer is both the guard and the kernel's
// settings. It is evaluated once per call: the guard binds it and the kernel's keywords read it.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/cli/rewrite.js';
import { repoRoot } from '../helpers/cli.js';

const FIXTURE = join(repoRoot, 'fixtures', 'models', 'lm_loss_function.py');

describe('lm_head_ce through self.loss_function', () => {
  it('evaluates the run-time check once per site, in the guard, and hands its answer to the kernel', () => {
    const run = runRewrite([FIXTURE], { rules: 'lm_head_ce' });
    const rewritten = run.sites.filter((s) => s.rule === 'lm_head_ce' && s.decision === 'rewritten');
    expect(rewritten.length).toBeGreaterThan(0);
    const text = run.files[0].rewritten;
    const checks = text.match(/_adopt\.causal_lm_loss\(/g) ?? [];
    expect(checks.length).toBe(rewritten.length);
    // each guard binds the answer, and each kernel call spreads the bound name
    const guards = text.match(/\(_adopt_lm_loss := _adopt\.causal_lm_loss\([^\n]*\)\) is not None/g) ?? [];
    expect(guards.length).toBe(rewritten.length);
    const spreads = text.match(/^\s+\*\*_adopt_lm_loss,$/gm) ?? [];
    expect(spreads.length).toBe(rewritten.length);
  });
});
