// Attention code the kernel does not compute: refused with the reason, never rewritten.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/pipeline/index.js';
import { tempProject } from '../helpers/ir.js';

const attention = (scores: string) => `import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = ${scores}
        probs = torch.softmax(scores, dim=-1)
        return (probs @ v).transpose(1, 2).reshape(B, N, C)
`;

describe('attention the kernel does not compute', () => {
  it('scores divided with a rounding mode are no scaling', () => {
    const dir = tempProject({ 'm.py': attention('torch.div(q @ k.transpose(-2, -1), 0.25, rounding_mode="floor")') });
    const run = runRewrite([join(dir, 'm.py')], { rules: 'attention' });
    const site = run.sites.find((s) => s.rule === 'attention');
    expect(site?.decision).toBe('skipped');
    expect(site?.reason).toMatch(/^div at line 14 rounds \(rounding_mode="floor"\): it is no scaling by a factor/);
    // the same division without rounding is a scale
    const plain = runRewrite([join(tempProject({ 'm.py': attention('torch.div(q @ k.transpose(-2, -1), 0.25)') }), 'm.py')], { rules: 'attention' });
    expect(plain.files[0].rewritten).toContain('scale=1.0 / (0.25)');
  });

  it('a key projection written inline is not called twice (once by the guard, once by the kernel call)', () => {
    const src = attention('torch.matmul(q, self.keys(x).transpose(-1, -2))').replace('        self.qkv = nn.Linear(dim, 3 * dim)', '        self.qkv = nn.Linear(dim, 3 * dim)\n        self.keys = nn.Linear(dim, dim)').replace('q, k, v = self.qkv(x)', 'q, _, v = self.qkv(x)').replace('        scores = torch.matmul', '        x = x.reshape(B, N, self.heads, self.head_dim).transpose(1, 2)\n        scores = torch.matmul');
    const run = runRewrite([join(tempProject({ 'm.py': src }), 'm.py')], { rules: 'attention' });
    const site = run.sites.find((s) => s.rule === 'attention');
    expect(site?.decision).toBe('skipped');
    expect(site?.reason).toBe('the call self.keys(x) would run more than once on the fast path');
  });
});
