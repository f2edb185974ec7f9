import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adopt, repoRoot } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

const rulesDir = join(repoRoot, 'rules');

describe('adopt verify', () => {
  it('verifies a correct rewrite (outputs and gradients, eval and train)', () => {
    const r = adopt(['verify', join(rulesDir, 'dropout_add_layernorm', 'before.py'), join(rulesDir, 'dropout_add_layernorm', 'after.py'), '--class', 'SelfOutput', '--shape', '2,7,32', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'verified', problems: [] });
  });

  it('catches a wrong rewrite: a softmax moved to another dimension', () => {
    const before = readFileSync(join(rulesDir, 'softmax', 'before.py'), 'utf8');
    const wrong = before.replace('nn.functional.softmax(scores, dim=-1)', 'nn.functional.softmax(scores, dim=-2)');
    const dir = tempProject({ 'wrong.py': wrong });
    const r = adopt(['verify', join(rulesDir, 'softmax', 'before.py'), join(dir, 'wrong.py'), '--class', 'ScoresHead', '--shape', '2,4,9,9']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/mismatch:\n\s+eval output 0: max abs error/);
  });

  it('catches exact GELU put in place of tanh GELU in float64, which float32\'s tolerance lets through', () => {
    const mlp = 'import torch.nn.functional as F\nfrom torch import nn\n\n\nclass MLP(nn.Module):\n    def __init__(self, dim=64):\n        super().__init__()\n        self.gate = nn.Linear(dim, 2 * dim)\n        self.up = nn.Linear(dim, 2 * dim)\n        self.down = nn.Linear(2 * dim, dim)\n\n    def forward(self, x):\n        return self.down(F.gelu(self.gate(x), approximate="tanh") * self.up(x))\n';
    const exact = mlp.replace(', approximate="tanh")', ')');
    expect(exact).not.toBe(mlp);
    const dir = tempProject({ 'mlp.py': mlp, 'exact.py': exact });
    const check = (dtype: string) => adopt(['verify', join(dir, 'mlp.py'), join(dir, 'exact.py'), '--class', 'MLP', '--shape', '2,7,64', '--dtype', dtype]);
    const r = check('fp64');
    expect(r.code, r.stdout).toBe(1);
    expect(r.stdout).toMatch(/eval output 0: max abs error .* tolerance 1e-05 in fp64/);
    // the same pair passes float32's 1e-3: the float64 check is the one that sees the activation
    expect(check('fp32').code).toBe(0);
  });

  it('reports a class in which the rewritten code never ran as not exercised, never as verified', () => {
    const model = 'import torch\nfrom torch import nn\n\n\ndef unused(x):\n    return x * 2\n\n\nclass Block(nn.Module):\n    def __init__(self, dim=8):\n        super().__init__()\n        self.proj = nn.Linear(dim, dim)\n\n    def forward(self, x):\n        return torch.relu(self.proj(x))\n';
    const changed = model.replace('return x * 2', 'return x + x');
    expect(changed).not.toBe(model);
    const dir = tempProject({ 'model.py': model, 'changed.py': changed });
    const r = adopt(['verify', join(dir, 'model.py'), join(dir, 'changed.py')]);
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(r.stdout).toMatch(/Block\s+not_exercised/);
    expect(r.stdout).toMatch(/0 verified, 0 mismatch, 1 not exercised/);
    const j = adopt(['verify', join(dir, 'model.py'), join(dir, 'changed.py'), '--json']);
    expect(JSON.parse(j.stdout)).toMatchObject({ verified: false, classes: [{ class: 'Block', status: 'not_exercised' }] });
  });

  it('catches a rewrite that breaks checkpoint loading', () => {
    const before = readFileSync(join(rulesDir, 'conv_bn', 'before.py'), 'utf8');
    const renamed = before.replaceAll('self.bn', 'self.norm');
    const dir = tempProject({ 'renamed.py': renamed });
    const r = adopt(['verify', join(rulesDir, 'conv_bn', 'before.py'), join(dir, 'renamed.py'), '--class', 'ConvBlock', '--shape', '2,3,9,9']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/does not load the original state dict strictly/);
  });

  it('bad usage exits 2', () => {
    expect(adopt(['verify', 'a.py', 'b.py', '--shape', '2,3']).code).toBe(2);
    expect(adopt(['verify', 'a.py', 'b.py', '--class', 'M', '--shape', 'two']).code).toBe(2);
  });
});
