// A submodule the fast path computes without calling (an attention's nn.Softmax, a loss module)
// is stood in for only where calling it would run its forward and nothing else: the guard asks
// `runs_its_forward`, so a hook on it (an attention map recorded from `self.attend`) keeps the
// original code. A module handed to the kernel, or one the rewrite leaves to run, needs no guard.
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/pipeline/index.js';
import { tempProject } from '../helpers/ir.js';

function rewrite(source: string, rules: string): string {
  const dir = tempProject({ 'm.py': source });
  return runRewrite([`${dir}/m.py`], { rules }).files[0]?.rewritten ?? source;
}

const attention = (softmax: string, init: string) => `import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
${init}
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.to_qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        dots = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        attn = self.drop(${softmax})
        out = torch.matmul(attn, v)
        return out.transpose(1, 2).reshape(b, n, d)
`;

describe('guards for submodules the fast path does not call', () => {
  it('an nn.Softmax module inside a rewritten attention: guarded by runs_its_forward', () => {
    const text = rewrite(attention('self.attend(dots)', '        self.attend = nn.Softmax(dim=-1)'), 'attention');
    expect(text).toMatch(/_adopt\.attention\(/);
    expect(text).toMatch(/and _adopt\.runs_its_forward\(self\.attend\)/);
    // the dropout module goes to the kernel, which checks it itself
    expect(text).not.toMatch(/runs_its_forward\(self\.drop\)/);
    expect(text).toMatch(/dropout_p=self\.drop/);
  });

  it('a functional softmax has no module to ask about', () => {
    const text = rewrite(attention('dots.softmax(dim=-1)', ''), 'attention');
    expect(text).toMatch(/_adopt\.attention\(/);
    expect(text).not.toMatch(/runs_its_forward/);
  });

  it('a projection the expression rewrite leaves to run needs no guard', () => {
    const text = rewrite(`import torch
import torch.nn.functional as F
from torch import nn


class GLU(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.proj = nn.Linear(d, 2 * d)

    def forward(self, x):
        gate, up = self.proj(x).chunk(2, dim=-1)
        return F.silu(gate) * up
`, 'gated_mlp_chunk');
    expect(text).toMatch(/_adopt\.gated_act/);
    expect(text).not.toMatch(/runs_its_forward/);
  });
});
