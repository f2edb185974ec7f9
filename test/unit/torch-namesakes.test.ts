// A project's own class named like a torch.nn class is not that class: a rule's `Linear` or
// `LayerNorm` line does not match it, and the near miss says why.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/pipeline/index.js';
import { tempProject } from '../helpers/ir.js';

const model = (imports: string) => `import torch
import torch.nn.functional as F
from torch import nn
${imports}

class Block(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.fc = Linear(d, 4 * d)
        self.proj = nn.Linear(4 * d, d)
        self.norm = LayerNorm(d)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        h = F.gelu(self.fc(x))
        return self.norm(self.drop(self.proj(h)) + x)
`;

const own = `

class Linear(nn.Module):
    def __init__(self, n_in, n_out, rank=4):
        super().__init__()
        self.a = nn.Parameter(torch.randn(n_in, rank))
        self.b = nn.Parameter(torch.randn(rank, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return x @ self.a @ self.b + self.bias


class LayerNorm(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))

    def forward(self, x):
        return x * self.weight
`;

describe('classes of the project named like torch.nn classes', () => {
  it('are not matched as torch\'s, and the near miss names the class', () => {
    const run = runRewrite([join(tempProject({ 'm.py': model(own) }), 'm.py')], );
    expect(run.sites.map((s) => s.rule)).toEqual([]);
    const miss = run.nearMisses.find((n) => n.rule === 'dropout_add_layernorm');
    expect(miss?.reason).toMatch(/: self\.norm at line 36 is m\.LayerNorm, a class of the project's own, not torch\.nn\.LayerNorm$/);
  });

  it('torch\'s own, imported by name, still are', () => {
    const run = runRewrite([join(tempProject({ 'm.py': model('from torch.nn import LayerNorm, Linear\n') }), 'm.py')]);
    expect(run.sites.map((s) => s.rule).sort()).toEqual(['dropout_add_layernorm', 'linear_gelu']);
  });
});
