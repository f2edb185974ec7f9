// `x if m is None else x + m`: the analysis keeps the add, marked absent_if_none; only a rule line
// that says it takes more (`add(s, $mask, ...)`, the attention mask a kernel reads None for) binds it.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzePaths } from '../../src/analysis/analyze.js';
import { runRewrite } from '../../src/cli/rewrite.js';
import { methodOf, moduleOf, opsOf, tempProject } from '../helpers/ir.js';

const source = `import torch
from torch import nn


def maybe_add(x, m=None):
    return x if m is None else x + m


class Block(nn.Module):
    def __init__(self, dim=32):
        super().__init__()
        self.drop = nn.Dropout(0.1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x, residual=None):
        y = maybe_add(self.drop(x), residual)
        return self.norm(y)


class Forms(nn.Module):
    def forward(self, y, bias=None):
        z = y + bias if bias is not None else y
        w = y if bias is None else y * bias
        return maybe_add(y, bias), z, w
`;

describe('an add that is skipped where its operand is None', () => {
  const dir = tempProject({ 'm.py': source });
  const ops = opsOf(methodOf(moduleOf(analyzePaths([join(dir, 'm.py')]).program, 'Forms')).body);

  it('is the add, marked absent_if_none, in either spelling of the conditional', () => {
    const marked = ops.filter((o) => o.callee === 'add' && o.kw.some(([k, v]) => k === 'absent_if_none' && v.k === 'const' && v.v === true));
    expect(marked.length).toBe(2);
    // a conditional of another form stays a conditional
    expect(ops.filter((o) => o.callee === 'ifexp').length).toBe(1);
  });
  it('is not a residual add to a rule whose line does not take it', () => {
    const run = runRewrite([join(dir, 'm.py')], { rules: 'dropout_add_layernorm' });
    expect(run.sites.filter((s) => s.rule === 'dropout_add_layernorm')).toEqual([]);
  });
});
