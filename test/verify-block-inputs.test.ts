// `rewrite --verify` on blocks whose inputs the harness must work out: an image block that starts
// with GroupNorm and takes a time embedding beside the image, a block with window-sized token
// counts that only the user's `--shape CLASS=SIZES` fits, and how a rule whose code ran in no class
// is explained when some class could not be run at all.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adopt, looksLikeCrash } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

// a diffusion UNet's pieces: a residual block fed (image, time embedding), and attention over the
// pixels of a GroupNorm-ed image as tokens; the attention is the site the built-in rule rewrites
const diffusion = `import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def group_norm(channels):
    return nn.GroupNorm(8, channels, eps=1e-6)


class TimeResBlock(nn.Module):
    def __init__(self, channels=16, time_dim=24):
        super().__init__()
        self.norm_in = group_norm(channels)
        self.conv_in = nn.Conv2d(channels, channels, 3, padding=1)
        self.time_proj = nn.Linear(time_dim, channels)
        self.norm_out = group_norm(channels)
        self.conv_out = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, time_emb):
        h = self.conv_in(F.silu(self.norm_in(x)))
        h = h + self.time_proj(F.silu(time_emb))[:, :, None, None]
        h = self.conv_out(F.silu(self.norm_out(h)))
        return x + h


class PixelAttention(nn.Module):
    def __init__(self, channels=16, heads=2):
        super().__init__()
        self.heads = heads
        self.norm = group_norm(channels)
        self.to_qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x):
        b, c, height, width = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)
        q, k, v = self.to_qkv(tokens).chunk(3, dim=-1)
        q = q.view(b, height * width, self.heads, -1).transpose(1, 2)
        k = k.view(b, height * width, self.heads, -1).transpose(1, 2)
        v = v.view(b, height * width, self.heads, -1).transpose(1, 2)
        scores = torch.einsum("bhid,bhjd->bhij", q, k) * (q.shape[-1] ** -0.5)
        weights = scores.softmax(dim=-1)
        out = torch.einsum("bhij,bhjd->bhid", weights, v)
        out = out.transpose(1, 2).reshape(b, height * width, c)
        return x + self.to_out(out).transpose(1, 2).reshape(b, c, height, width)
`;

// attention inside 7 x 7 windows: its position table takes 49 tokens, no count the harness tries
const windows = `import torch
from torch import nn


class WindowAttention(nn.Module):
    def __init__(self, dim=32, window=7, heads=4):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.position_bias = nn.Parameter(torch.randn(heads, window * window, window * window) * 0.02)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn + self.position_bias.unsqueeze(0)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Head(nn.Module):
    def __init__(self, dim=32, classes=10):
        super().__init__()
        self.fc = nn.Linear(dim, classes)

    def forward(self, x):
        return self.fc(x.mean(dim=1))
`;

interface Site { rule: string; decision: string; reason: string }
interface Verification { rules: { rule: string; verdict: string; detail?: string }[] }

function rewrite(dir: string, file: string, ...extra: string[]) {
  const r = adopt(['rewrite', join(dir, file), '--verify', '--json', '--repeats', '0', ...extra], { env: { ADOPT_DB: join(dir, 'db.jsonl') } });
  expect(looksLikeCrash(r.stderr), r.stderr).toBe(false);
  return { ...r, json: r.stdout ? JSON.parse(r.stdout) as { sites: Site[]; verification?: Verification[] } : undefined };
}

describe('rewrite --verify: inputs of blocks', () => {
  it('feeds a GroupNorm-first block an image, and a time embedding beside it, and verifies the attention rewrite', () => {
    const dir = tempProject({ 'diffusion.py': diffusion });
    const r = rewrite(dir, 'diffusion.py');
    expect(r.code, r.stderr).toBe(0);
    const attention = r.json!.sites.find((s) => s.rule === 'attention');
    expect(attention, JSON.stringify(r.json!.sites)).toMatchObject({ decision: 'rewritten', reason: 'guarded rewrite, verified in torch' });
  });

  it('takes --shape CLASS=SIZES for a class whose input it cannot find, and explains the rule it could not check', () => {
    const dir = tempProject({ 'windows.py': windows });
    const without = rewrite(dir, 'windows.py');
    const site = without.json!.sites.find((s) => s.rule === 'attention')!;
    expect(site.decision).toBe('skipped');
    // the rule's code ran in no class that could run: the class that could not is named, with why
    expect(site.reason).toMatch(/could not be run \(WindowAttention: no input the model accepts \(float\(2,7,32\): RuntimeError: /);
    // a try's message is whole (a cut at 80 characters ended it in 'non-singleton d'), and what is
    // cut ends at a word, with an ellipsis
    expect(site.reason).toContain('must match the size of tensor b (49) at non-singleton dimension 3;');
    expect(site.reason).toMatch(/ [\w()]+…\)/);
    const given = rewrite(dir, 'windows.py', '--shape', 'WindowAttention=2,49,32');
    expect(given.code, given.stderr).toBe(0);
    expect(given.json!.sites.find((s) => s.rule === 'attention')).toMatchObject({ decision: 'rewritten' });
  });

  it('refuses a --shape that names no class, or comes without --verify', () => {
    const dir = tempProject({ 'windows.py': windows });
    const bad = adopt(['rewrite', join(dir, 'windows.py'), '--verify', '--shape', '2,49,32']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--shape takes CLASS=SIZES/);
    const alone = adopt(['rewrite', join(dir, 'windows.py'), '--shape', 'WindowAttention=2,49,32']);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toMatch(/--shape only go with --verify/);
  });
});
