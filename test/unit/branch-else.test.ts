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
    expect(text).toMatch(/if \(\n\s+not self\.cosine\n\s+and _adopt is not None/);
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

  it('in the else of an if/elif chain: the guard holds every condition false, in the order the chain tests them', () => {
    const { sites, text } = attentionSite(`        if self.cosine:
            attn = torch.zeros(q.shape[0], q.shape[1], k.shape[1])
        elif self.scale > 1:
            attn = torch.ones(q.shape[0], q.shape[1], k.shape[1])
        else:
            attn = q @ k.transpose(-2, -1) * self.scale`);
    const site = sites.find((s) => s.lines[0] === 17)!;
    expect(site, JSON.stringify(sites)).toMatchObject({ decision: 'rewritten' });
    expect(text).toMatch(/if \(\n\s+not self\.cosine\n\s+and not \(self\.scale > 1\)\n\s+and _adopt is not None/);
  });

  it('in an elif clause: the earlier condition false and its own true', () => {
    const { sites, text } = attentionSite(`        if self.cosine:
            attn = torch.zeros(q.shape[0], q.shape[1], k.shape[1])
        elif self.scale > 1:
            attn = q @ k.transpose(-2, -1) * self.scale
        else:
            attn = torch.ones(q.shape[0], q.shape[1], k.shape[1])`);
    const site = sites.find((s) => s.lines[0] === 15)!;
    expect(site, JSON.stringify(sites)).toMatchObject({ decision: 'rewritten' });
    expect(text).toMatch(/if \(\n\s+not self\.cosine\n\s+and \(self\.scale > 1\)\n\s+and _adopt is not None/);
  });

  it('a negated conjunction another condition already excludes is left out', () => {
    const { sites, text } = attentionSite(`        if self.cosine and self.scale > 1:
            attn = torch.zeros(q.shape[0], q.shape[1], k.shape[1])
        elif self.cosine:
            attn = torch.ones(q.shape[0], q.shape[1], k.shape[1])
        else:
            attn = q @ k.transpose(-2, -1) * self.scale`);
    expect(sites.find((s) => s.lines[0] === 17), JSON.stringify(sites)).toMatchObject({ decision: 'rewritten' });
    expect(text).toMatch(/if \(\n\s+not self\.cosine\n\s+and _adopt is not None/);
    expect(text).not.toMatch(/not \(self\.cosine and/);
  });

  it('projections in two clauses of a chain never run together: not a site, and the near miss says why', () => {
    const run = qkvRun(`        q = self.q(x)
        if self.mode == 0:
            k = self.k(x)
            v = x
        elif self.mode == 1:
            k = x
            v = self.v(x)
        else:
            k = x
            v = x`);
    expect(run.sites.filter((s) => s.rule === 'qkv_fusion'), JSON.stringify(run.sites)).toEqual([]);
    const miss = run.nearMisses.find((n) => n.rule === 'qkv_fusion' && n.line === 17);
    expect(miss?.reason, JSON.stringify(run.nearMisses)).toMatch(/different branches of one if \(lines 19 and 23\)/);
  });

  it('k and v nested under a further if inside the taken clause: listed, not rewritten', () => {
    const run = qkvRun(`        q = self.q(x)
        if self.mode == 0:
            k = x
            v = x
        else:
            if self.flag:
                k = self.k(x)
                v = self.v(x)
            else:
                k = x
                v = x`);
    expectSkipped(run, /nested under a statement of the branch/);
  });

  it('a clause condition that reads what the matched statements before it compute: listed, not rewritten', () => {
    const run = qkvRun(`        q = self.q(x)
        if q.shape[0] > 1:
            k = x
            v = x
        else:
            k = self.k(x)
            v = self.v(x)`);
    expectSkipped(run, /reads what the matched statements before it compute/);
  });

  it('a clause condition that draws random numbers: listed, not rewritten (the guard would draw again)', () => {
    const run = qkvRun(`        q = self.q(x)
        if self.training and random.random() < 0.1:
            k = x
            v = x
        else:
            k = self.k(x)
            v = self.v(x)`);
    expectSkipped(run, /draws random numbers/);
  });

  it('a name only the taken clause assigns and later code reads stays computed on the fast path or refuses', () => {
    const run = qkvRun(`        q = self.q(x)
        if self.mode == 0:
            k = x
            v = x
        else:
            k = self.k(x)
            v = self.v(x)
            scale = 2.0`, 'q * scale, k, v');
    const [site] = run.sites.filter((s) => s.rule === 'qkv_fusion');
    expect(site, JSON.stringify(run.sites)).toBeDefined();
    const text = run.files[0].rewritten;
    // the fast path: from the guard to its `else:`
    const fast = text.slice(text.indexOf("_adopt.enabled('fused_qkv')"), text.indexOf('\n        else:'));
    if (site.decision === 'rewritten') expect(fast).toContain('scale = 2.0');
    else expect(site.reason).toMatch(/scale/);
  });
});

function qkvRun(body: string, returns = 'q, k, v') {
  const dir = tempProject({ 'm.py': `import random

import torch
from torch import nn


class Proj(nn.Module):
    def __init__(self, d=8, mode=0, flag=True):
        super().__init__()
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.mode = mode
        self.flag = flag

    def forward(self, x):
${body}
        return ${returns}
` });
  return runRewrite([`${dir}/m.py`], { rules: 'qkv_fusion', whyNot: true });
}

/** The one qkv_fusion site of the run is listed, not rewritten, for the reason given. */
function expectSkipped(run: ReturnType<typeof qkvRun>, reason: RegExp) {
  const [site] = run.sites.filter((s) => s.rule === 'qkv_fusion');
  expect(site, JSON.stringify(run.sites)).toMatchObject({ decision: 'skipped' });
  expect(site.reason).toMatch(reason);
}
