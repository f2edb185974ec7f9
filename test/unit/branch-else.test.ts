// Matched code that starts inside one branch of an if/else and goes on after it: the fast path
// stands for the branch the match is in, and the guard asks for the condition that takes it.
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/pipeline/index.js';
import { tempProject } from '../helpers/ir.js';

const model = (branches: string) => `import torch
from torch import nn


class Attn(nn.Module):
    def __init__(self, cosine=False):
        super().__init__()
        self.cosine = cosine
        self.scale = 0.125

    def forward(self, q, k, v):
${branches}
        attn = attn.softmax(dim=-1)
        out = attn @ v
        return out
`;

function attentionSite(branches: string) {
  const dir = tempProject({ 'm.py': model(branches) });
  const run = runRewrite([`${dir}/m.py`], { rules: 'attention', whyNot: true });
  return { sites: run.sites.filter((s) => s.rule === 'attention'), text: run.files[0].rewritten };
}

describe('a match beginning in a branch of an if/else', () => {
  it('in the else branch: the fast path runs where the condition is false', () => {
    const { sites, text } = attentionSite(`        if self.cosine:
            attn = torch.zeros(q.shape[0], q.shape[1], k.shape[1])
        else:
            attn = q @ k.transpose(-2, -1) * self.scale`);
    const plain = sites.find((s) => s.lines[0] === 15)!;
    expect(plain, JSON.stringify(sites)).toMatchObject({ decision: 'rewritten' });
    expect(text).toMatch(/if \(\n\s+not \(self\.cosine\)\n\s+and _adopt is not None/);
  });

  it('in the if branch: the fast path runs where the condition holds', () => {
    const { sites, text } = attentionSite(`        if self.cosine:
            attn = q @ k.transpose(-2, -1) * self.scale
        else:
            attn = torch.zeros(q.shape[0], q.shape[1], k.shape[1])`);
    const site = sites.find((s) => s.lines[0] === 13)!;
    expect(site, JSON.stringify(sites)).toMatchObject({ decision: 'rewritten' });
    expect(text).toMatch(/if \(\n\s+\(self\.cosine\)\n\s+and _adopt is not None/);
  });

  it('under an elif chain: listed with the reason, not rewritten', () => {
    const { sites } = attentionSite(`        if self.cosine:
            attn = q @ k.transpose(-2, -1) * self.scale
        elif self.scale > 1:
            attn = torch.zeros(q.shape[0], q.shape[1], k.shape[1])
        else:
            attn = q @ k.transpose(-2, -1)`);
    const site = sites.find((s) => s.lines[0] === 13)!;
    expect(site, JSON.stringify(sites)).toMatchObject({ decision: 'skipped' });
    expect(site.reason).toMatch(/if\/elif chain/);
  });
});
