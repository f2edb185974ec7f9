// Forms of real code whose site is reached through code the analysis folds or follows: a helper
// imported from another file (listed where it is called; rewritten there when the helper returns
// the matched value as it is), constant branches (`torch.jit.is_scripting()`, a helper's default
// flag), a variable left assigned in one branch, a reshape between a residual add and its norm,
// and a gated unit split along a dim held in an attribute.
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../src/cli/rewrite.js';
import { tempProject } from './helpers/ir.js';

const ROTARY = `import torch


def rotate_every_two(x):
    return torch.stack([-x[..., 1::2], x[..., ::2]], -1).reshape(x.shape)


def apply_rot(x, cos, sin, half: bool = False):
    if half:
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin
    return x * cos + rotate_every_two(x) * sin


def apply_plain(x, cos, sin):
    return x * cos + rotate_every_two(x) * sin


def apply_pairs(x, freqs, use_real: bool = True):
    if use_real:
        cos, sin = freqs
        x_even, x_odd = x.reshape(*x.shape[:-1], -1, 2).unbind(-1)
        x_rotated = torch.stack([-x_odd, x_even], dim=-1).flatten(3)
        return (x.float() * cos + x_rotated.float() * sin).to(x.dtype)
    return x
`;

const MODEL = `import torch
from torch import nn

from .rotary import apply_pairs, apply_plain, apply_rot


class Attn(nn.Module):
    def __init__(self, dim=16):
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)

    def forward(self, x, cos, sin):
        q = self.q(x).view(x.shape[0], x.shape[1], 2, -1)
        k = self.k(x).view(x.shape[0], x.shape[1], 2, -1)
        q = apply_rot(q, cos, sin)
        k = apply_plain(k, cos, sin)
        return q * k


class Processor:
    def __call__(self, attn, x, freqs):
        q = attn.q(x).view(x.shape[0], x.shape[1], 2, -1)
        q = apply_pairs(q, freqs)
        return q
`;

describe('a match inside a helper of another file', () => {
  const dir = tempProject({ 'pkg/__init__.py': '', 'pkg/rotary.py': ROTARY, 'pkg/model.py': MODEL });
  const run = runRewrite([`${dir}/pkg/model.py`], { root: dir, learned: false });
  const at = (line: number) => run.sites.filter((s) => s.file.endsWith('model.py') && s.lines[0] === line);

  it('is listed at each call, in the file being rewritten', () => {
    expect(run.sites.filter((s) => s.file.endsWith('rotary.py'))).toEqual([]);
    for (const line of [16, 17, 24]) expect(at(line).map((s) => s.rule), `line ${line}`).toContain('rope_interleaved');
  });

  it('is rewritten at the call when the helper returns the matched value as it is', () => {
    expect(at(17)[0].decision).toBe('rewritten');
    const out = run.files.find((f) => f.path.endsWith('model.py'))!.rewritten;
    expect(out).toContain('k = (_adopt.apply_rope_interleaved(k, None, cos, sin, unsqueeze_dim=None) if ');
    expect(out).toContain('else apply_plain(k, cos, sin))');
    // the helper's file is left as it is
    expect(run.files.some((f) => f.path.endsWith('rotary.py') && f.rewritten !== f.original)).toBe(false);
  });

  it('says why not where the call does not hand back the matched value', () => {
    expect(at(16)[0].decision).toBe('skipped');
    expect(at(16)[0].reason).toMatch(/helper apply_rot has 2 return statements/);
    expect(at(24)[0].reason).toMatch(/helper apply_pairs does not return the matched value as it is/);
  });
});

describe('branches the analysis decides or sees through', () => {
  it('torch.jit.is_scripting() is False where the rewrite runs; a variable left in one branch is no use', () => {
    const dir = tempProject({
      'norms.py': `import torch
from torch import nn


def rms(x, weight, eps: float = 1e-6):
    v = x.pow(2)
    if torch.jit.is_scripting():
        v = torch.mean(v, dim=-1).unsqueeze(-1)
    else:
        v = torch.mean(v, dim=-1, keepdim=True)
    return x * torch.rsqrt(v + eps) * weight


class ScriptableNorm(nn.Module):
    def __init__(self, dim=8, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return rms(x.float(), self.weight, self.eps).to(x.dtype)


class OptionalWeightNorm(nn.Module):
    def __init__(self, dim=8, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, hidden_states):
        if self.weight is None:
            hidden_states = hidden_states * 2
        else:
            variance = hidden_states.to(torch.float32).pow(2).mean(-1, keepdim=True)
            hidden_states = hidden_states * torch.rsqrt(variance + self.eps)
            hidden_states = hidden_states * self.weight
        return hidden_states
`,
    });
    const run = runRewrite([`${dir}/norms.py`], { learned: false });
    const scripted = run.sites.find((s) => s.lines[0] === 21);
    expect(scripted?.rule).toBe('rmsnorm_fp32_scale');
    expect(scripted?.decision, scripted?.reason).toBe('rewritten');
    expect(run.sites.find((s) => s.lines[0] === 34)?.rule).toBe('rmsnorm_variance_fp32');
  });
});
