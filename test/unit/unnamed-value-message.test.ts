// A metavariable's value that has no name where the rewrite runs (the output of an nn.Sequential
// called inside the statement the rewrite replaces) is refused with a reason a user can act on:
// which placeholder, which metavariable, and why it has no name, not "cannot express {x}".
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/pipeline/index.js';
import { tempProject } from '../helpers/ir.js';

const MODEL = `import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.drop = nn.Dropout(0.1)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        x = self.norm(x + self.drop(self.ff(x)))
        return x
`;

describe('a value with no name where the rewrite runs', () => {
  it('is refused naming the placeholder, its metavariable and why', () => {
    const dir = tempProject({ 'm.py': MODEL });
    const run = runRewrite([join(dir, 'm.py')], { rules: 'dropout_add_layernorm' });
    const site = run.sites.find((s) => s.rule === 'dropout_add_layernorm');
    expect(site?.decision).toBe('skipped');
    expect(site?.reason).toBe('cannot write {x}, the value the pattern binds to $x, where the rewrite runs: it has no name there (it is computed inside a statement the rewrite replaces, or its name holds another value by then)');
  });
});
