import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../src/cli/rewrite.js';
import { adopt } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';
import { unwrapped } from './helpers/unwrap.js';

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
const attn = (forward: string, init = '', params = '') => `import math
import torch
import torch.nn.functional as F
from torch import nn


class Attn(nn.Module):
    def __init__(self, hidden_size=16, num_heads=2${params}):
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

const LITERAL_ELSE_READ_BY_THE_KERNEL = attn(`    def forward(self, x, bias=None):
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
`, '        self.use_bias = use_bias', ', use_bias=False');

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

const LITERAL_ELSE_AFTER_A_READ = attn(`    def forward(self, x, bias=None):
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        m = torch.triu(torch.full((t, t), -1e4), 1)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = scores + m
        if self.use_bias:
            m = bias
        else:
            m = 0.5
        probs = scores.softmax(dim=-1)
        ctx = torch.matmul(probs, v)
        return ctx.transpose(1, 2).reshape(b, t, c)
`, '        self.use_bias = use_bias', ', use_bias=False');

const OUTPUT_STATEMENT_READS_A_REASSIGNED_NAME = attn(`    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        x = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        x = x.softmax(dim=-1)
        x = torch.matmul(x, v).transpose(1, 2).reshape(b, t, c) + x.amax()
        return x
`, '        self.use_bias = use_bias', ', use_bias=False');

const OPERAND_CALLS_A_MODULE = attn(`    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(self.qn(q), k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        probs = scores.softmax(dim=-1)
        ctx = torch.matmul(probs, v)
        return ctx.transpose(1, 2).reshape(b, t, c) + self.qn.running_mean.sum()
`, '        self.qn = nn.BatchNorm2d(num_heads)');

const CONDITION_READS_A_LITERAL_ELSE_NAME = attn(`    def forward(self, x, mask=None):
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if self.use_mask:
            m = mask
        else:
            m = None
        if m is not None:
            scores = scores + m
        probs = scores.softmax(dim=-1)
        ctx = torch.matmul(probs, v)
        return ctx.transpose(1, 2).reshape(b, t, c)
`, `        self.use_mask = False`);

const GUARD_READS_A_BRANCH_ASSIGNMENT = attn(`    def forward(self, x, mask=None):
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if t > 0:
            v2 = self.vn(v)
            scores = scores + 0.0
        probs = scores.softmax(dim=-1)
        ctx = torch.matmul(probs, v2)
        return ctx.transpose(1, 2).reshape(b, t, c)
`, `        self.vn = nn.BatchNorm2d(num_heads)`);

const BOOLEAN_MASK_ADDED = attn(`    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        keep = torch.ones(t, t, dtype=torch.bool).triu(1)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = scores + keep
        probs = scores.softmax(dim=-1)
        ctx = torch.matmul(probs, v)
        return ctx.transpose(1, 2).reshape(b, t, c)
`);

const FUNCTIONAL_DROPOUT_ALWAYS_ON = attn(`    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        probs = scores.softmax(dim=-1)
        probs = F.dropout(probs, 0.999)
        ctx = torch.matmul(probs, v)
        return ctx.transpose(1, 2).reshape(b, t, c)
`, `        self.qn = nn.BatchNorm2d(num_heads)`);

const MEMORY_KEYS = attn(`    def forward(self, x):
        b, t, c = x.shape
        q = self.q(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2).reshape(b * self.num_heads, t, self.head_dim)
        w = torch.matmul(q, self.mem_k.transpose(1, 2)) / math.sqrt(self.head_dim)
        w = w.view(b, self.num_heads, t, 4) + self.mem_mask
        w = w.view(b * self.num_heads, t, 4)
        p = w.softmax(dim=-1)
        o = torch.matmul(p, self.mem_v)
        return o.view(b, self.num_heads, t, self.head_dim).transpose(1, 2).reshape(b, t, c)
`, `        self.q = nn.Linear(hidden_size, hidden_size)
        self.mem_k = nn.Parameter(torch.randn(1, 4, hidden_size // num_heads))
        self.mem_v = nn.Parameter(torch.randn(1, 4, hidden_size // num_heads))
        self.register_buffer("mem_mask", torch.zeros(1, 1, 1, 4))`);

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
    expect(unwrapped(sites[0].reason)).toMatch(/'scores' is read where the result is used but only the original statements compute it/);
  });

  it('a statement is not moved past an in-place update it reads', () => {
    const { sites } = rewriteAttn(IN_PLACE_UPDATE_BETWEEN);
    expect(sites[0].decision).toBe('skipped');
    expect(unwrapped(sites[0].reason)).toMatch(/lies between the matched statements/);
  });

  it('a temperature built from a tensor argument is not taken for a number (the softmax dim stays unproven)', () => {
    const { sites } = rewriteAttn(TENSOR_TEMPERATURE);
    expect(sites).toEqual([]);
  });

  it('the scores\' dtype is not read off the query after the scores were upcast', () => {
    const { sites } = rewriteAttn(DTYPE_AFTER_UPCAST);
    expect(sites[0].decision).toBe('skipped');
    expect(unwrapped(sites[0].reason)).toMatch(/lies between the matched statements/);
  });
  it('refuses what would read a value at the wrong time or run a module twice', () => {
    const expectations: [string, RegExp][] = [
      [LITERAL_ELSE_AFTER_A_READ, /lies between the matched statements/],
      [OUTPUT_STATEMENT_READS_A_REASSIGNED_NAME, /'x' is read where the result is used but only the original statements compute it/],
      [OPERAND_CALLS_A_MODULE, /the call self\.qn\(q\) would run more than once on the fast path/],
      [CONDITION_READS_A_LITERAL_ELSE_NAME, /the guard would read 'm' before the fast path assigns it/],
    ];
    for (const [src, why] of expectations) {
      const { sites } = rewriteAttn(src);
      expect(sites[0].decision).toBe('skipped');
      expect(unwrapped(sites[0].reason)).toMatch(why);
    }
  });

  it('a branch assigning what the kernel reads is not run ahead of the guard: it is left to the original code', () => {
    // running `v2 = self.vn(v)` first would let the guard read v2 before it is assigned; instead
    // the fast path is taken only where the branch is not, and there v2 is what it was before
    const dir = tempProject({ 'm.py': GUARD_READS_A_BRANCH_ASSIGNMENT });
    const run = runRewrite([join(dir, 'm.py')], { rules: 'attention' });
    expect(run.sites[0].decision).toBe('rewritten');
    const lines = unwrapped(run.files[0].rewritten).split('\n');
    const guard = lines.find((l) => l.includes("_adopt.enabled('attention')"))!;
    expect(guard.trim().startsWith('if not (t > 0) and')).toBe(true);
    const fast = lines.slice(lines.indexOf(guard) + 1, lines.findIndex((l, i) => i > lines.indexOf(guard) && l.trim() === 'else:'));
    expect(unwrapped(fast.join('\n'))).not.toContain('self.vn(');
  });

  it('rewrites and verifies: a boolean mask added to the scores (passed as added, True counting 1), an always-on functional dropout, keys from a learned memory', () => {
    for (const src of [BOOLEAN_MASK_ADDED, FUNCTIONAL_DROPOUT_ALWAYS_ON, MEMORY_KEYS]) {
      const { sites, verify } = rewriteAttn(src);
      expect(sites[0].decision).toBe('rewritten');
      const v = verify();
      expect(v.code, v.stderr).toBe(0);
      expect(v.result).toMatchObject({ verified: true });
    }
  });
});

describe('a mask added only when given', () => {
  const MASK_WHEN_GIVEN = attn(`    def forward(self, x, mask=None):
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores + mask
        probs = scores.softmax(dim=-1)
        ctx = torch.matmul(probs, v)
        return ctx.transpose(1, 2).reshape(b, t, c)
`);

  it('needs no guard on the branch (the kernel takes mask=None as no mask) and verifies without a mask', () => {
    const { sites, verify } = rewriteAttn(MASK_WHEN_GIVEN);
    expect(sites[0].decision).toBe('rewritten');
    const dir = tempProject({ 'm.py': MASK_WHEN_GIVEN });
    const text = runRewrite([join(dir, 'm.py')], { rules: 'attention' }).files[0].rewritten;
    const guard = text.split('\n').find((l) => l.includes("_adopt.enabled('attention')"))!;
    expect(unwrapped(guard)).not.toContain('mask is not None');
    expect(unwrapped(text)).toContain('mask=mask,');
    const v = verify();
    expect(v.code, v.stderr).toBe(0);
    expect(v.result).toMatchObject({ verified: true });
  });

  it('keeps the guard when the branch does more than add the mask', () => {
    const src = MASK_WHEN_GIVEN.replace('            scores = scores + mask\n', '            scores = scores + mask\n            t = t + 0\n');
    const dir = tempProject({ 'm.py': src });
    const run = runRewrite([join(dir, 'm.py')], { rules: 'attention' });
    const text = unwrapped(run.files[0].rewritten);
    expect(run.sites[0].decision).toBe('rewritten');
    const guard = text.split('\n').find((l) => l.includes("_adopt.enabled('attention')"))!;
    expect(unwrapped(guard)).toMatch(/^\s*if \(mask is not None\) and /);
  });
});

describe('Linear then a functional GELU', () => {
  const mlp = (act: string, init = '') => `import torch
import torch.nn.functional as F
from torch import nn

ACT2FN = {"gelu": nn.GELU(), "relu": nn.ReLU()}


class Mlp(nn.Module):
    def __init__(self, hidden_size=16):
        super().__init__()
        self.fc = nn.Linear(hidden_size, 4 * hidden_size)
        self.out = nn.Linear(4 * hidden_size, hidden_size)
${init}
    def forward(self, x):
        return self.out(${act})
`;

  it('asks the guard about the function or table lookup that runs (an attribute may be swapped), or the approximation named; verifies in torch', () => {
    const cases: [string, string, string][] = [
      ['F.gelu(self.fc(x))', '', '_adopt.gelu_kind(F.gelu)'],
      ['self.act(self.fc(x))', '        self.act = F.gelu\n', '_adopt.gelu_kind(self.act)'],
      ['F.gelu(self.fc(x), approximate="tanh")', '', '_adopt.gelu_kind("gelu_pytorch_tanh")'],
      ['ACT2FN[self.hidden_act](self.fc(x))', '        self.hidden_act = "gelu"\n', '_adopt.gelu_kind(ACT2FN[self.hidden_act])'],
    ];
    for (const [act, init, kind] of cases) {
      const dir = tempProject({ 'm.py': mlp(act, init) });
      const run = runRewrite([join(dir, 'm.py')], { rules: 'linear_gelu' });
      expect(run.sites[0].decision, act).toBe('rewritten');
      expect(unwrapped(run.files[0].rewritten)).toContain(kind);
      writeFileSync(join(dir, 'rw.py'), run.files[0].rewritten);
      const r = adopt(['verify', join(dir, 'm.py'), join(dir, 'rw.py'), '--class', 'Mlp', '--shape', '2,5,16', '--json']);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ verified: true });
    }
  });
});

describe('the order of random draws', () => {
  it('a submodule call is not moved before a dropout that ran ahead of it', () => {
    const src = attn(`    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        probs = scores.softmax(dim=-1)
        probs = self.attn_drop(probs)
        extra = self.noisy(x)
        ctx = torch.matmul(probs, v)
        return ctx.transpose(1, 2).reshape(b, t, c) + extra
`, `        self.attn_drop = nn.Dropout(0.1)
        self.noisy = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.Dropout(0.1))`);
    const { sites } = rewriteAttn(src);
    expect(sites[0].decision).toBe('skipped');
    expect(unwrapped(sites[0].reason)).toMatch(/lies between the matched statements/);
  });
});
