// A metavariable's value that has no name where the rewrite runs is refused with a reason a user
// can act on: which placeholder, which metavariable, and why it has no name, not "cannot express
// {x} as source text here". An nn.Sequential's output is named where the Sequential is called.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/pipeline/index.js';
import { repoRoot } from '../helpers/cli.js';
import { tempProject } from '../helpers/ir.js';

const SEQUENTIAL_FFN = `import torch
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

describe('values named where the rewrite runs', () => {
  it("an nn.Sequential's output called inside the replaced statement is written out as that call", () => {
    const dir = tempProject({ 'm.py': SEQUENTIAL_FFN });
    const run = runRewrite([join(dir, 'm.py')], { rules: 'dropout_add_layernorm' });
    expect(run.sites.find((s) => s.rule === 'dropout_add_layernorm')?.decision).toBe('rewritten');
    expect(run.files[0].rewritten.replace(/\s+/g, ' ')).toContain('x = _adopt.dropout_add_layer_norm( self.ff(x), x, self.norm, self.drop, self.training )');
  });

  it("and named by its variable where it is assigned first", () => {
    const dir = tempProject({ 'm.py': SEQUENTIAL_FFN.replace('        x = self.norm(x + self.drop(self.ff(x)))', '        h = self.ff(x)\n        x = self.norm(x + self.drop(h))') });
    const run = runRewrite([join(dir, 'm.py')], { rules: 'dropout_add_layernorm' });
    expect(run.files[0].rewritten.replace(/\s+/g, ' ')).toContain('x = _adopt.dropout_add_layer_norm(h, x, self.norm, self.drop, self.training)');
  });

  it('a value with no name there is refused naming the placeholder, its metavariable and why', () => {
    const file = join(repoRoot, 'fixtures', 'models', 'deberta_style.py');
    const run = runRewrite([file], { rules: 'attention' });
    const site = run.sites.find((s) => s.rule === 'attention' && s.lines[0] === 92);
    expect(site?.decision).toBe('skipped');
    expect(site?.reason).toBe('cannot write {q}, the value the pattern binds to $q, where the rewrite runs: it has no name there (it is computed inside a statement the rewrite replaces, or its name holds another value by then)');
  });
});

describe('names in the other branch of an if, and names rebound later', () => {
  const block = (forward: string) => `import torch
from torch import nn


class Layer(nn.Module):
    def __init__(self, d=16, pre_norm=False):
        super().__init__()
        self.pre_norm = pre_norm
        self.attn = nn.Linear(d, d)
        self.ffn = nn.Linear(d, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.dropout = nn.Dropout(0.1)

${forward}`;

  it('an assignment in the branch not taken does not hide the residual, and a rebound name is not read later', () => {
    const text = runRewrite([join(tempProject({ 'm.py': block(`    def forward(self, x):
        if self.pre_norm:
            x = x + self.dropout(self.attn(self.norm1(x)))
            return x + self.dropout(self.ffn(self.norm2(x)))
        else:
            h = self.attn(x)
            h = self.dropout(h)
            x = self.norm1(x + h)
            h = self.ffn(x)
            h = self.dropout(h)
            return self.norm2(x + h)
`) }), 'm.py')], { rules: 'dropout_add_layernorm' }).files[0].rewritten.replace(/\s+/g, ' ');
    expect(text).toMatch(/x = _adopt\.dropout_add_layer_norm\( ?h, x, self\.norm1, self\.dropout, self\.training ?\)/);
  });

  it('a read of the value before the name is rebound still counts', () => {
    const run = runRewrite([join(tempProject({ 'm.py': block(`    def forward(self, x):
        h = self.attn(x)
        h = self.dropout(h)
        x = self.norm1(x + h)
        y = h * 2
        h = self.ffn(x)
        return x + y + h
`) }), 'm.py')], { rules: 'dropout_add_layernorm' });
    expect(run.files[0]?.rewritten ?? '').not.toMatch(/dropout_add_layer_norm\(/);
  });
});

describe('a template that reads a value written out as a call twice', () => {
  it('is refused: the module would run (and draw its dropout mask) twice', () => {
    const rule = 'rule softplus_stable\n  match\n    y = softplus($x)\n  rewrite expr y\n    "torch.log1p(torch.exp(-{x}.abs())) + {x}.clamp(min=0)"\n  kernel cpu torch "torch.log1p"\n';
    const src = 'import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\nclass SP(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 4)\n        self.drop = nn.Dropout(0.1)\n\n    def forward(self, x):\n        return F.softplus(self.drop(self.fc(x)))\n';
    const dir = tempProject({ 'm.py': src, 'r.rule': rule });
    const run = runRewrite([join(dir, 'm.py')], { rules: join(dir, 'r.rule'), builtinRules: false });
    expect(run.sites[0].decision).toBe('skipped');
    expect(run.sites[0].reason).toMatch(/^the call self\.drop\(self\.fc\(x\)\) would run more than once on the fast path/);
    // named first, the value is read twice, the module called once
    const named = src.replace('        return F.softplus(self.drop(self.fc(x)))', '        h = self.drop(self.fc(x))\n        return F.softplus(h)');
    const again = runRewrite([join(tempProject({ 'm.py': named, 'r.rule': rule }), 'm.py')], { rules: join(dir, 'r.rule'), builtinRules: false });
    expect(again.files[0].rewritten).toContain('torch.log1p(torch.exp(-h.abs())) + h.clamp(min=0)');
  });
});
