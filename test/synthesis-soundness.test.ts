import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../src/cli/rewrite.js';
import { adopt } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

// Cases where a rewrite could look local but would not be exact: each is either refused or
// rewritten to code that verifies in torch against the original.

const rewriteAttn = (src: string, config?: string) => {
  const dir = tempProject({ 'm.py': src });
  const run = runRewrite([join(dir, 'm.py')], { rules: 'attention' });
  const verify = () => {
    writeFileSync(join(dir, 'rw.py'), run.files[0].rewritten);
    const args = ['verify', join(dir, 'm.py'), join(dir, 'rw.py'), '--class', 'Attn', '--shape', '2,5,16', '--json'];
    const r = adopt(config ? [...args, '--config', config] : args);
    return { code: r.code, result: JSON.parse(r.stdout || '{}'), stderr: r.stderr };
  };
  return { sites: run.sites, verify };
};

/** A multi-head attention module `Attn` with a fused qkv projection, and the given forward. */
const attn = (forward: string, init = '') => `import math
import torch
from torch import nn


class Attn(nn.Module):
    def __init__(self, hidden_size=16, num_heads=2):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
${init}
${forward}`;

const HEAD_MASK_RESHAPED_IN_SKIPPED_BRANCH = attn(`    def forward(self, x, head_mask=None):
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2))
        scores = scores / math.sqrt(self.head_dim)
        probs = scores.softmax(dim=-1)
        if head_mask is not None:
            head_mask = head_mask.view(1, -1, 1, 1)
            probs = probs * head_mask
        ctx = torch.matmul(probs, v)
        return ctx.transpose(1, 2).reshape(b, t, c)
`);

const LITERAL_ELSE_READ_BY_THE_KERNEL = `import math
import torch
from torch import nn


class Attn(nn.Module):
    def __init__(self, hidden_size=16, num_heads=2, use_bias=False):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.use_bias = use_bias
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)

    def forward(self, x, bias=None):
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        m = torch.triu(torch.full((t, t), -1e4), 1)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if self.use_bias:
            m = bias
        else:
            m = 0.5
        scores = scores + m
        probs = scores.softmax(dim=-1)
        ctx = torch.matmul(probs, v)
        return ctx.transpose(1, 2).reshape(b, t, c)
`;

const SCORES_READ_BESIDE_THE_OUTPUT = attn(`    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        probs = scores.softmax(dim=-1)
        ctx = torch.matmul(probs, v).transpose(1, 2).reshape(b, t, c) + scores.mean()
        return ctx
`);

const IN_PLACE_UPDATE_BETWEEN = attn(`    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2))
        if self.training:
            self.temp.mul_(2.0)
        bias = torch.arange(t, dtype=x.dtype) * self.temp
        scores = scores + bias
        probs = scores.softmax(dim=-1)
        ctx = torch.matmul(probs, v)
        return ctx.transpose(1, 2).reshape(b, t, c)
`, `        self.register_buffer("temp", torch.ones(()))`);

const TENSOR_TEMPERATURE = `import torch
from torch import nn


class Attn(nn.Module):
    def __init__(self, hidden_size=16, temperature=torch.tensor([[[[1.0]]], [[[0.5]]]])):
        super().__init__()
        self.d = hidden_size
        self.temp = temperature * 1.0   # per-ensemble-member temperatures, shape (2, 1, 1, 1)
        self.q = nn.Linear(hidden_size, hidden_size)
        self.k = nn.Linear(hidden_size, hidden_size)
        self.v = nn.Linear(hidden_size, hidden_size)

    def forward(self, x):
        b, t, c = x.shape
        q = self.q(x).view(b, t, c)
        k = self.k(x).view(b, t, c)
        v = self.v(x).view(b, t, c)
        scores = torch.matmul(q, k.transpose(1, 2)) * self.temp
        probs = torch.softmax(scores, dim=2)
        out = torch.matmul(probs, v)
        return out.sum(0)
`;

const DTYPE_AFTER_UPCAST = attn(`    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2))
        scores = scores.float()
        bias = torch.ones(t, t, device=scores.device) * torch.finfo(scores.dtype).min
        scores = scores + bias
        probs = scores.softmax(dim=-1)
        ctx = torch.matmul(probs.type_as(v), v)
        return ctx.transpose(1, 2).reshape(b, t, c)
`);

describe('rewrites that must stay exact', () => {
  it('a branch the fast path skips does not run on it (a head mask reshaped under if head_mask is not None)', () => {
    const { sites, verify } = rewriteAttn(HEAD_MASK_RESHAPED_IN_SKIPPED_BRANCH);
    expect(sites[0].decision).toBe('rewritten');
    const v = verify();
    expect(v.code, v.stderr).toBe(0);
    expect(v.result.fast_path_calls).toBeGreaterThan(0);
  });

  it('an else branch that assigns a literal runs before the kernel that reads it', () => {
    const { sites, verify } = rewriteAttn(LITERAL_ELSE_READ_BY_THE_KERNEL);
    expect(sites[0].decision).toBe('rewritten');
    const v = verify();
    expect(v.code, v.stderr).toBe(0);
    expect(v.result.fast_path_calls).toBeGreaterThan(0);
  });

  it('a statement around the output that reads an intermediate only the original computes is refused', () => {
    const { sites } = rewriteAttn(SCORES_READ_BESIDE_THE_OUTPUT);
    expect(sites[0].decision).toBe('skipped');
    expect(sites[0].reason).toMatch(/'scores' is read where the result is used but only the original statements compute it/);
  });

  it('a statement is not moved past an in-place update it reads', () => {
    const { sites } = rewriteAttn(IN_PLACE_UPDATE_BETWEEN);
    expect(sites[0].decision).toBe('skipped');
    expect(sites[0].reason).toMatch(/lies between the matched statements/);
  });

  it('a temperature built from a tensor argument is not taken for a number (the softmax dim stays unproven)', () => {
    const { sites } = rewriteAttn(TENSOR_TEMPERATURE);
    expect(sites).toEqual([]);
  });

  it('the scores\' dtype is not read off the query after the scores were upcast', () => {
    const { sites } = rewriteAttn(DTYPE_AFTER_UPCAST);
    expect(sites[0].decision).toBe('skipped');
    expect(sites[0].reason).toMatch(/lies between the matched statements/);
  });
});
