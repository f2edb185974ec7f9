// `softmax(x, dim=2)` is a last-dim softmax only where x is known to be 3-D: the ranks the matcher
// reads off the code, through the scale a diffusion block computes from its sizes.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/pipeline/index.js';
import { tempProject } from '../helpers/ir.js';

const block = (scale: string, heads = 'self.num_heads') => `import math

import torch
from torch import nn


class SpatialSelfAttention(nn.Module):
    def __init__(self, channels=32, num_heads=4):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        d = c // ${heads}
        q = self.q(x).reshape(b * ${heads}, d, h * w).permute(0, 2, 1)
        k = self.k(x).reshape(b * ${heads}, d, h * w)
        v = self.v(x).reshape(b * ${heads}, d, h * w)
        w_ = torch.bmm(q, k) * ${scale}
        w_ = torch.softmax(w_, dim=2)
        out = torch.bmm(v, w_.permute(0, 2, 1))
        return out.reshape(b, c, h, w)
`;

const rules = (src: string) => {
  const run = runRewrite([join(tempProject({ 'm.py': src }), 'm.py')]);
  return { sites: run.sites.filter((s) => s.decision === 'rewritten').map((s) => s.rule), misses: run.nearMisses.map((n) => n.reason) };
};

describe('static ranks', () => {
  it('a scale from math.sqrt of a size divided by a head count __init__ stored is a number: the bmm scores stay 3-D', () => {
    expect(rules(block('(1.0 / math.sqrt(d))')).sites).toEqual(['attention']);
    expect(rules(block('d ** -0.5')).sites).toEqual(['attention']);
  });

  it('a scale of unknown rank leaves dim=2 unknown: a near miss that says so', () => {
    const r = rules(block('self.scale_table[0]'));
    expect(r.sites).toEqual([]);
    expect(r.misses).toContain('softmax over dim=2: not the last dimension (rank unknown)');
  });
});
