import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../src/cli/rewrite.js';
import { adopt } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

/** A rotary attention block around the given rotate_half / apply_rotary_pos_emb. */
const model = (helpers: string) => `import torch
from torch import nn

${helpers}

class Block(nn.Module):
    def __init__(self, hidden=16, heads=2):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        freqs = torch.outer(torch.arange(t, dtype=x.dtype), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        q, k = apply_rotary_pos_emb(q, k, emb.cos()[None, None], emb.sin()[None, None])
        return (q * k).sum(-1)
`;

const CHUNK_RETURN_TUPLE = `def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)
`;

const rewriteRope = (helpers: string) => {
  const dir = tempProject({ 'm.py': model(helpers) });
  const run = runRewrite([join(dir, 'm.py')], { rules: 'rope' });
  return { dir, run, sites: run.sites.filter((s) => s.rule === 'rope') };
};

describe('rope rule', () => {
  it('rewrites the chunk spelling returned as a tuple, and the rewrite verifies in torch', () => {
    const { dir, run, sites } = rewriteRope(CHUNK_RETURN_TUPLE);
    expect(sites.map((s) => s.decision)).toEqual(['rewritten']);
    const out = run.files[0].rewritten;
    expect(out).toContain("        return _adopt.apply_rope(q, k, cos, sin, unsqueeze_dim=None)\n    else:\n        return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)");
    // the helper itself is left alone: other callers may use it
    expect(out).toContain('def rotate_half(x):\n    x1, x2 = x.chunk(2, dim=-1)\n    return torch.cat((-x2, x1), dim=-1)');
    writeFileSync(join(dir, 'rewritten.py'), out);
    const v = adopt(['verify', join(dir, 'm.py'), join(dir, 'rewritten.py')]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    expect(v.stdout).toMatch(/Block +verified +max abs error \S+, fast-path calls [1-9]/);
  }, 120_000);

  it('does not take the interleaved layout, a split off the middle, or a concatenation on another dim for rotate_half', () => {
    const interleaved = `def rotate_half(x):
    x1 = x[..., ::2]
    x2 = x[..., 1::2]
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def apply_rotary_pos_emb(q, k, cos, sin):
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)
`;
    const offMiddle = CHUNK_RETURN_TUPLE.replace('x1, x2 = x.chunk(2, dim=-1)', 'x1, x2 = x[..., :2], x[..., 2:]');
    const otherDim = CHUNK_RETURN_TUPLE.replace('torch.cat((-x2, x1), dim=-1)', 'torch.cat((-x2, x1), dim=-2)');
    const swapped = CHUNK_RETURN_TUPLE.replace('x1, x2 = x.chunk(2, dim=-1)', 'x2, x1 = x.chunk(2, dim=-1)');
    for (const helpers of [interleaved, offMiddle, otherDim, swapped]) expect(rewriteRope(helpers).sites).toEqual([]);
  });

  it('says why a split off the middle is not rotate_half', () => {
    const dir = tempProject({ 'm.py': model(CHUNK_RETURN_TUPLE.replace('x1, x2 = x.chunk(2, dim=-1)', 'x1, x2 = x[..., :2], x[..., 2:]')) });
    const r = adopt(['rewrite', '--rules', 'rope', '--why-not', join(dir, 'm.py')]);
    expect(r.stdout + r.stderr).toMatch(/rope: .*do not split the last dimension at its middle/);
  });
});

describe('rope_interleaved rule', () => {
  const gptj = (slices: [string, string]) => `import torch


def rotate_every_two(x):
    x1 = x[${slices[0]}]
    x2 = x[${slices[1]}]
    x = torch.stack((-x2, x1), dim=-1)
    return x.flatten(-2)


def apply_rotary_pos_emb(tensor, sin, cos):
    return (tensor * cos) + (rotate_every_two(tensor) * sin)
`;
  const rewrite = (src: string) => {
    const dir = tempProject({ 'g.py': src });
    const run = runRewrite([join(dir, 'g.py')], { rules: 'rope_interleaved,rope' });
    return { sites: run.sites, out: run.files[0]?.rewritten ?? '' };
  };

  it('rewrites one tensor at a time, guarding the rank its full slices assume', () => {
    const { sites, out } = rewrite(gptj([':, :, :, ::2', ':, :, :, 1::2']));
    expect(sites.map((s) => [s.rule, s.decision])).toEqual([['rope_interleaved', 'rewritten']]);
    expect(out).toContain("return (_adopt.apply_rope_interleaved(tensor, None, cos, sin, unsqueeze_dim=None) if _adopt is not None and _adopt.enabled('apply_rope_interleaved') and tensor.dim() == 4 else (tensor * cos) + (rotate_every_two(tensor) * sin))");
    // with `...` the slices are on the last dimension whatever the rank: the guard line settles to
    // True and is left out
    expect(rewrite(gptj(['..., ::2', '..., 1::2'])).out).toContain("_adopt.enabled('apply_rope_interleaved') else (tensor * cos)");
  });

  it('does not take odd/even swapped, a stride other than 2, or the half-split layout', () => {
    expect(rewrite(gptj(['..., 1::2', '..., ::2'])).sites).toEqual([]);
    expect(rewrite(gptj(['..., ::3', '..., 1::3'])).sites).toEqual([]);
    expect(rewrite(gptj(['..., : x.shape[-1] // 2', '..., x.shape[-1] // 2 :'])).sites.filter((s) => s.rule === 'rope_interleaved')).toEqual([]);
  });
});

describe('rope_single rule', () => {
  const esm = `import torch
from torch import nn


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(x, cos, sin):
    cos = cos[:, :, : x.shape[-2], :]
    sin = sin[:, :, : x.shape[-2], :]
    return (x * cos) + (rotate_half(x) * sin)
`;

  it('rewrites a rotation applied to one tensor, and not the halves of a q/k pair', () => {
    const dir = tempProject({ 'esm.py': esm, 'pair.py': model(CHUNK_RETURN_TUPLE) });
    const single = runRewrite([join(dir, 'esm.py')], { rules: 'rope_single' });
    expect(single.sites.map((s) => [s.rule, s.decision])).toEqual([['rope_single', 'rewritten']]);
    expect(single.files[0].rewritten).toContain("return (_adopt.apply_rope(x, None, cos, sin, unsqueeze_dim=None) if _adopt is not None and _adopt.enabled('apply_rope') else (x * cos) + (rotate_half(x) * sin))");
    const pair = runRewrite([join(dir, 'pair.py')], { rules: 'rope_single' });
    expect(pair.sites).toEqual([]);
  });
});
