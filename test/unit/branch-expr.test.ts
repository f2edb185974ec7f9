// An expression rewrite replaces the last line of a match; a matched line that runs only on one
// branch of an if reaches that expression only where the branch is taken, so the rewrite, which
// runs on every path, is refused there.
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/pipeline/index.js';
import { tempProject } from '../helpers/ir.js';

const glu = (body: string) => `import torch
import torch.nn.functional as F
from torch import nn


class GLU(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.proj = nn.Linear(d, 2 * d)

    def forward(self, x, act: bool = True):
        gate, up = self.proj(x).chunk(2, dim=-1)
${body}
`;

function rewrite(source: string) {
  const dir = tempProject({ 'm.py': source });
  const run = runRewrite([`${dir}/m.py`], { rules: 'gated_mlp_chunk', whyNot: true });
  return { text: run.files[0]?.rewritten ?? source, sites: run.sites };
}

describe('an expression rewrite over a line inside a branch', () => {
  it('the activation on one branch only: refused with the lines', () => {
    const { text, sites } = rewrite(glu(`        if act:
            a = F.silu(gate)
        else:
            a = gate
        return a * up`));
    expect(text).not.toMatch(/_adopt\.gated_act/);
    expect(sites.map((s) => s.reason).join('\n')).toMatch(/silu at line 14 runs only on one branch of an if, and the expression rewritten at line 17 runs on every path/);
  });

  it('the whole match inside the branch: rewritten there', () => {
    const { text } = rewrite(glu(`        if act:
            return F.silu(gate) * up
        return gate * up`));
    expect(text).toMatch(/_adopt\.gated_act\(gate, up, torch\.nn\.functional\.silu\)/);
  });

  it('no branch: rewritten', () => {
    const { text } = rewrite(glu('        return F.silu(gate) * up'));
    expect(text).toMatch(/_adopt\.gated_act/);
  });

  it('an expression in a function nested in forward, matched through one of its calls: refused', () => {
    const { text, sites } = rewrite(glu(`        def mix(g, u):
            return F.silu(g) * u
        return mix(gate, up) + mix(up, gate)`));
    expect(text).not.toMatch(/_adopt\.gated_act/);
    expect(sites.map((s) => s.reason).join('\n')).toMatch(/the expression at line 14 is in mix, matched only through its call at line 15/);
  });
});

describe('a name bound with := inside the matched code', () => {
  it('is refused, not dropped from the rewritten expression', () => {
    const source = `import torch


def scores(q, k, d):
    s = torch.matmul(q, (k := k * 2).transpose(-2, -1)) / d
    return s + k.sum()
`;
    const dir = tempProject({ 'm.py': source, 'my.rule': `rule my_scores
  title "q @ k^T / s -> (q / s) @ k^T"
  match
    t = transpose($k, -2, -1)
    s = matmul($q, t)
    y = div(s, $scale)
  rewrite expr y
    "torch.matmul({q} * (1.0 / {scale}), {k}.transpose(-2, -1))"
  kernel cpu torch "torch.matmul"
` });
    const run = runRewrite([`${dir}/m.py`], { rules: `${dir}/my.rule`, builtinRules: false, whyNot: true });
    expect(run.files[0]?.rewritten ?? source).toBe(source);
    expect(run.sites.map((s) => s.reason).join('\n')).toMatch(/binds k with := at line 5/);
  });
});
