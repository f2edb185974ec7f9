// The rmsnorm rule's kernel casts the normalised float32 value back to the INPUT's dtype before the
// weight scales it (`_adopt.rms_norm(x, w, eps, cast_to_fp32=True)`). Only a cast to the input's
// own dtype is that: `h.to(input_dtype)` with `input_dtype = x.dtype` (LLaMA, Mistral), `h.to(x.dtype)`,
// `h.type_as(x)`. A cast to the weight's dtype, to a fixed half precision or to float32 computes
// something else wherever the dtypes differ, so such a site is a near miss with the reason, not a
// rewrite. And a reduction over two dimensions (`mean((-2, -1))`) is not the kernel's last-dim
// norm: it was rewritten under the statically false guard `(-2, -1) == -1`; it is a near miss.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/pipeline/index.js';
import { repoRoot } from '../helpers/cli.js';
import { tempProject } from '../helpers/ir.js';
import { RMS_CAST_MODELS, RMS_CAST_REFUSED, RMS_REWRITTEN, RMS_TWO_DIMS } from '../helpers/rmsnorm-models.js';

describe('rmsnorm: the cast back and the reduction', () => {
  const dir = tempProject({ 'm.py': RMS_CAST_MODELS });
  const run = runRewrite([join(dir, 'm.py')], { whyNot: true });
  const rms = run.sites.filter((s) => s.rule.startsWith('rmsnorm'));
  // the complete matches refused by a constraint (other places where the pattern began are --why-not=all's)
  const misses = (owner: string) => run.nearMisses.filter((n) => n.owner === owner && n.rule === 'rmsnorm' && n.constraint);

  it('rewrites a cast back to the input\'s own dtype, with a guard that can hold', () => {
    expect(rms.filter((s) => s.decision === 'rewritten').map((s) => s.owner).sort()).toEqual([...RMS_REWRITTEN].sort());
    for (const s of rms) expect(s.guards.join(' and '), s.owner).not.toMatch(/\(-?\d+, -?\d+\) == -1|\(-1,\) == -1/);
    expect(rms.find((s) => s.owner === 'DimAttr')?.guards).toContain('self.norm_dim == -1');
  });

  it('refuses any other cast as a near miss that names it', () => {
    for (const owner of RMS_CAST_REFUSED) {
      expect(rms.find((s) => s.owner === owner), owner).toBeUndefined();
      expect(misses(owner).map((n) => n.reason), owner).toEqual([expect.stringMatching(/not back to the input's own dtype/)]);
    }
    expect(misses('WeightDtype')[0].reason).toMatch(/self\.weight\.dtype/);
    expect(misses('Bf16Out')[0].reason).toMatch(/torch\.bfloat16/);
    expect(misses('HalfOut')[0].reason).toMatch(/torch\.float16/);
  });

  it('refuses a reduction over more than the last dimension as a near miss', () => {
    expect(rms.find((s) => s.owner === RMS_TWO_DIMS)).toBeUndefined();
    expect(misses(RMS_TWO_DIMS).map((n) => n.reason)).toEqual([expect.stringMatching(/over more than the last dimension/)]);
  });

  it('writes no rmsnorm rewrite for the refused classes', () => {
    const text = run.files[0].rewritten;
    for (const owner of [...RMS_CAST_REFUSED, RMS_TWO_DIMS]) {
      const body = text.slice(text.indexOf(`class ${owner}(`)).split('\nclass ')[0];
      expect(body, owner).not.toMatch(/_adopt\.rms_norm/);
    }
  });

  it('{m.last_dim_check} never writes a guard that cannot hold, in a rule without the constraint', () => {
    const rule = readFileSync(join(repoRoot, 'rules', 'rmsnorm', 'rmsnorm.rule'), 'utf8')
      .replace('rule rmsnorm', 'rule rms_guard_only').replace(/^ {4}(last_dim_at_run_time|cast_back)\(.*\n/gm, '').replace(/^ {2}example .*\n/gm, '') + '  example "m.py" "m.py"\n';
    const d = tempProject({ 'm.py': RMS_CAST_MODELS, 'r.rule': rule });
    const own = runRewrite([join(d, 'm.py')], { rules: join(d, 'r.rule'), builtinRules: false });
    const two = own.sites.find((s) => s.owner === RMS_TWO_DIMS);
    expect(two).toMatchObject({ decision: 'skipped', reason: expect.stringMatching(/over 2 dims: a reduction over more than the last dimension/) });
    expect(own.sites.find((s) => s.owner === 'LastDimTuple')).toMatchObject({ decision: 'rewritten', guards: [expect.any(String)] });
  });
});
