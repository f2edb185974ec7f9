import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../src/cli/rewrite.js';
import { adopt, repoRoot } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';
import { unwrapped } from './helpers/unwrap.js';

/** `adopt verify` of one class of a rewritten file: verified with the fast path run, or, where the
 *  guard sends the class down the original branch, no mismatch (the rewritten file's fallback
 *  computes what the original does) and reported as not exercised, never as verified. */
function expectVerified(original: string, rewritten: string, cls: string, fast: boolean, config?: string): void {
  const r = adopt(['verify', original, rewritten, '--class', cls, '--json', ...(config ? ['--config', config] : [])]);
  expect(r.code, r.stdout + r.stderr).toBe(fast ? 0 : 2);
  const c = JSON.parse(r.stdout).classes[0];
  expect(c).toMatchObject({ status: fast ? 'verified' : 'not_exercised', problems: [] });
  if (fast) expect(c.fast_path_calls).toBeGreaterThan(0);
  else expect(c.fast_path_calls).toBe(0);
}

// BERT's self-attention as transformers writes it: a relative-position branch between the
// scores and the scaling, the mask under `if`, a head mask under `if`, and the probabilities
// returned when output_attentions.
const bert = (maskBranch: string) => `import math

import torch
from torch import nn


class SelfAttention(nn.Module):
    def __init__(self, hidden=32, heads=4, position_embedding_type="absolute"):
        super().__init__()
        self.heads = heads
        self.head_size = hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(0.1)
        self.position_embedding_type = position_embedding_type
        self.distance_embedding = nn.Embedding(64, self.head_size)

    def split(self, x):
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_size).permute(0, 2, 1, 3)

    def forward(self, x, attention_mask=None, head_mask=None, output_attentions=False):
        q = self.split(self.query(x))
        k = self.split(self.key(x))
        v = self.split(self.value(x))
        if attention_mask is None:
            attention_mask = torch.zeros(x.shape[0], 1, 1, x.shape[1], dtype=x.dtype)

        attention_scores = torch.matmul(q, k.transpose(-1, -2))

        if self.position_embedding_type == "relative_key":
            n = x.shape[1]
            distance = torch.arange(n).view(-1, 1) - torch.arange(n).view(1, -1)
            positional = self.distance_embedding(distance + 31).to(q.dtype)
            attention_scores = attention_scores + torch.einsum("bhld,lrd->bhlr", q, positional)

        attention_scores = attention_scores / math.sqrt(self.head_size)
        if attention_mask is not None:
${maskBranch}
            attention_scores = attention_scores + attention_mask

        attention_probs = nn.functional.softmax(attention_scores, dim=-1)
        attention_probs = self.dropout(attention_probs)

        if head_mask is not None:
            attention_probs = attention_probs * head_mask

        context = torch.matmul(attention_probs, v)
        context = context.permute(0, 2, 1, 3).reshape(x.shape)
        return (context, attention_probs) if output_attentions else (context,)
`;

describe('attention rewrites around the code transformers puts in between', () => {
  const src = bert('            # precomputed additive mask');

  it('guards on the branches the kernel does not cover and on the escaping probabilities', () => {
    const dir = tempProject({ 'a.py': src });
    const run = runRewrite([join(dir, 'a.py')], { rules: 'attention' });
    expect(run.sites[0]).toMatchObject({ rule: 'attention', decision: 'rewritten' });
    const out = run.files[0].rewritten;
    const guard = unwrapped(out).split('\n').find((l) => l.includes("_adopt.enabled('attention')"))!;
    // the relative-position branch does nothing when its condition is false
    expect(unwrapped(guard)).toContain('not (self.position_embedding_type == "relative_key")');
    // the head mask is not covered by the kernel: the fast path runs without one
    expect(unwrapped(guard)).toContain('not (head_mask is not None)');
    // the probabilities are read later only when output_attentions
    expect(unwrapped(guard)).toContain('not output_attentions');
    expect(unwrapped(out)).toContain('attention_probs = None  # adopt: read only when output_attentions');
    // the scale is the divisor, not the scores carried through the branch
    expect(unwrapped(out)).toContain('scale=1.0 / (math.sqrt(self.head_size))');
  });

  it('the rewrite verifies in torch, on the fast path and with the relative branch taken', () => {
    const dir = tempProject({ 'a.py': src });
    const out = join(dir, 'a_rw.py');
    expect(adopt(['rewrite', join(dir, 'a.py'), '--rules', 'attention', '-o', out]).code).toBe(0);
    expectVerified(join(dir, 'a.py'), out, 'SelfAttention', true);
    expectVerified(join(dir, 'a.py'), out, 'SelfAttention', false, '{"position_embedding_type": "relative_key"}');
  });

  it('runs other assignments of the mask branch on the fast path too (a reshaped mask), and verifies in torch', () => {
    const reshaped = bert('            if attention_mask.ndim == 3:\n                attention_mask = attention_mask.unsqueeze(1)');
    const dir = tempProject({ 'b.py': reshaped });
    const run = runRewrite([join(dir, 'b.py')], { rules: 'attention' });
    expect(run.sites[0].decision).toBe('rewritten');
    const out = run.files[0].rewritten;
    const lines = unwrapped(out).split('\n');
    const guardAt = lines.findIndex((l) => l.includes("_adopt.enabled('attention')"));
    expect(lines.slice(guardAt + 1, guardAt + 4)).toEqual([
      '            if attention_mask.ndim == 3:',
      '                attention_mask = attention_mask.unsqueeze(1)',
      expect.stringContaining('context = _adopt.attention(q, k, v, mask=attention_mask,'),
    ]);
    writeFileSync(join(dir, 'b_rw.py'), out);
    const r = adopt(['verify', join(dir, 'b.py'), join(dir, 'b_rw.py'), '--class', 'SelfAttention', '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).classes[0]).toMatchObject({ status: 'verified' });
  });

  it('leaves a mask branch holding code that reads the scores to the original code: the fast path runs without a mask', () => {
    const reads = bert('            attention_mask = attention_mask + 0 * attention_scores');
    const dir = tempProject({ 'c.py': reads });
    const out = join(dir, 'c_rw.py');
    expect(adopt(['rewrite', join(dir, 'c.py'), '--rules', 'attention', '-o', out]).code).toBe(0);
    const text = readFileSync(out, 'utf8');
    const guard = unwrapped(text).split('\n').find((l) => l.includes("_adopt.enabled('attention')"))!;
    expect(unwrapped(guard)).toContain('not (attention_mask is not None)');
    expect(unwrapped(text)).toMatch(/_adopt\.attention\(q, k, v, mask=None,/);
    // the branch is not taken on the fast path: nothing of it runs there
    const fast = text.slice(text.indexOf(guard), text.indexOf('else:', text.indexOf(guard)));
    expect(unwrapped(fast)).not.toContain('0 * attention_scores');
  });
});

// Swin's window attention: q pre-scaled, a relative-position bias gathered between the scores
// and their use, a shifted-window mask under `if`, nn.Softmax as a module, and the output
// reshaped in the statement that computes it.
const swin = (between: string) => `import torch
from torch import nn


class WindowAttention(nn.Module):
    def __init__(self, dim=16, window=3, heads=2):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        n = window * window
        self.relative_position_bias_table = nn.Parameter(torch.randn(2 * n, heads) * 0.02)
        self.register_buffer("relative_position_index", torch.randint(0, 2 * n, (n, n)))
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(0.0)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x, mask=None):
        B_, N, C = x.shape
        qkv = self.qkv(x).reshape(B_, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * self.scale
        attn = q @ k.transpose(-2, -1)
${between}
        attn = attn + relative_position_bias.unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            attn = attn.view(B_ // nW, nW, self.heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.heads, N, N)
        attn = self.softmax(attn)
        attn = self.attn_drop(attn)
        return (attn @ v).transpose(1, 2).reshape(B_, N, C)
`;

describe('attention with code between the scores and their use (Swin window attention)', () => {
  const gather = [
    '        relative_position_bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(N, N, -1)',
    '        relative_position_bias = relative_position_bias.permute(2, 0, 1).contiguous()',
  ].join('\n');

  it('runs the independent statements first, names the output inside its statement, and verifies in torch', () => {
    const dir = tempProject({ 'w.py': swin(gather) });
    const run = runRewrite([join(dir, 'w.py')], { rules: 'attention' });
    expect(run.sites[0]).toMatchObject({ rule: 'attention', decision: 'rewritten' });
    const out = run.files[0].rewritten;
    const lines = unwrapped(out).split('\n');
    const guardAt = lines.findIndex((l) => l.includes("_adopt.enabled('attention')"));
    // the bias is gathered before the guard, once
    expect(unwrapped(lines.slice(0, guardAt).join('\n'))).toContain(gather);
    expect(out.split('relative_position_bias = relative_position_bias.permute').length).toBe(2);
    expect(unwrapped(lines[guardAt])).toContain('not (mask is not None)');
    expect(unwrapped(lines[guardAt + 1])).toMatch(/^ {12}_adopt_o = _adopt\.attention\(q, .*mask=relative_position_bias\.unsqueeze\(0\), scale=1\.0/);
    expect(lines[guardAt + 2]).toBe('            return (_adopt_o).transpose(1, 2).reshape(B_, N, C)');
    writeFileSync(join(dir, 'w_rw.py'), out);
    const r = adopt(['verify', join(dir, 'w.py'), join(dir, 'w_rw.py'), '--class', 'WindowAttention', '--shape', '2,9,16', '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ verified: true, problems: [] });
    expect(j.fast_path_calls).toBeGreaterThan(0);
  });

  it('keeps a statement in place when it reads what a statement before it writes', () => {
    // the bias reads the scores: moving it first would change what it reads
    const dependent = '        relative_position_bias = self.relative_position_bias_table[self.relative_position_index].permute(2, 0, 1) + 0 * attn[0]';
    const run = runRewrite([join(tempProject({ 'w.py': swin(dependent) }), 'w.py')], { rules: 'attention' });
    expect(run.sites[0].decision).toBe('skipped');
    expect(unwrapped(run.sites[0].reason)).toMatch(/lies between the matched statements/);
  });
});

describe('attention written with einsum and unpacked generators (einsum_attention fixture)', () => {
  it('is rewritten in every class, the key named as written (not the einsum text), and verifies in torch', () => {
    const dir = tempProject({});
    const src = join(repoRoot, 'fixtures', 'models', 'einsum_attention.py');
    const out = join(dir, 'rw.py');
    expect(adopt(['rewrite', src, '-o', out]).code).toBe(0);
    const text = readFileSync(out, 'utf8');
    const calls = unwrapped(text).split('\n').filter((l) => l.includes('_adopt.attention('));
    expect(calls.length).toBe(2);
    for (const c of calls) expect(unwrapped(c)).toContain('_adopt.attention(q, k, v,');
    const r = adopt(['verify', src, out, '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const byClass = Object.fromEntries(JSON.parse(r.stdout).classes.map((c: { class: string }) => [c.class, c]));
    for (const cls of ['Attention', 'LatentCrossAttention', 'EinsumTransformer']) {
      expect(byClass[cls]).toMatchObject({ status: 'verified' });
      expect(byClass[cls].fast_path_calls).toBeGreaterThan(0);
    }
  }, 300_000);
});

describe('attention computed transposed, channels first (a diffusion UNet block)', () => {
  const block = (probs: string) => `import torch
import torch.nn.functional as F
from torch import nn


class AttnBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(4, channels)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x):
        h_ = self.norm(x)
        q, k, v = self.q(h_), self.k(h_), self.v(h_)
        b, c, h, w = q.shape
        q = q.reshape(b, c, h * w).permute(0, 2, 1)
        k = k.reshape(b, c, h * w)
        w_ = torch.bmm(q, k) * (int(c) ** (-0.5))
        w_ = F.softmax(w_, dim=2)
        v = v.reshape(b, c, h * w)
${probs}
        h_ = torch.bmm(v, w_)
        return x + h_.reshape(b, c, h, w)
`;

  it('runs the kernel on the transposed values and transposes its output back; verifies in torch', () => {
    const dir = tempProject({ 'a.py': block('        w_ = w_.permute(0, 2, 1)') });
    const out = join(dir, 'a_rw.py');
    expect(adopt(['rewrite', join(dir, 'a.py'), '--rules', 'attention', '-o', out]).code).toBe(0);
    expect(unwrapped(readFileSync(out, 'utf8'))).toContain('h_ = _adopt.attention(q, k.transpose(-2, -1), v.transpose(-2, -1), mask=None, scale=int(c) ** (-0.5)');
    const r = adopt(['verify', join(dir, 'a.py'), out, '--class', 'AttnBlock', '--config', '{"channels": 8}', '--shape', '2,8,5,3', '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ verified: true });
  });

  it('is not attention when the probabilities are not transposed (v @ p), nor when they are permuted otherwise', () => {
    for (const probs of ['        w_ = w_ + 0', '        w_ = w_.permute(1, 0, 2)']) {
      const dir = tempProject({ 'a.py': block(probs) });
      const j = JSON.parse(adopt(['rewrite', '--json', '--rules', 'attention', join(dir, 'a.py')]).stdout);
      expect(j.sites, probs).toEqual([]);
    }
  });
});

// GPT-2's attention: a helper method that always returns the probabilities, a causal buffer
// applied with torch.where under `if not self.is_cross_attention`, the mask value built from the
// scores' dtype, and a caller that reads the probabilities only when output_attentions.
const gpt2 = (extra = '') => `import torch
from torch import nn


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden=32, heads=4, max_positions=16, is_cross_attention=False):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.is_cross_attention = is_cross_attention
        self.register_buffer("bias", torch.tril(torch.ones(max_positions, max_positions, dtype=torch.bool)).view(1, 1, max_positions, max_positions), persistent=False)
        self.c_attn = nn.Linear(hidden, 3 * hidden)
        self.attn_dropout = nn.Dropout(0.1)

    def _attn(self, query, key, value, attention_mask=None, head_mask=None):
        attn_weights = torch.matmul(query, key.transpose(-1, -2))
        attn_weights = attn_weights / torch.full([], value.size(-1) ** 0.5, dtype=attn_weights.dtype, device=attn_weights.device)
        if not self.is_cross_attention:
            query_length, key_length = query.size(-2), key.size(-2)
            causal_mask = self.bias[:, :, key_length - query_length : key_length, :key_length]
            mask_value = torch.finfo(attn_weights.dtype).min
            mask_value = torch.full([], mask_value, dtype=attn_weights.dtype).to(attn_weights.device)
            attn_weights = torch.where(causal_mask, attn_weights.to(attn_weights.dtype), mask_value)
        if attention_mask is not None:
            attn_weights = attn_weights + attention_mask
        attn_weights = nn.functional.softmax(attn_weights, dim=-1)
        attn_weights = attn_weights.type(value.dtype)
        attn_weights = self.attn_dropout(attn_weights)
        if head_mask is not None:
            attn_weights = attn_weights * head_mask
        attn_output = torch.matmul(attn_weights, value)
        return attn_output, attn_weights

    def forward(self, x, attention_mask=None, head_mask=None, output_attentions=False):
        b, n, c = x.shape
        q, k, v = (t.view(b, n, self.heads, self.head_dim).transpose(1, 2) for t in self.c_attn(x).split(c, dim=2))
        if attention_mask is None:
            attention_mask = torch.zeros(b, 1, 1, n, dtype=x.dtype)
        attn_output, attn_weights = self._attn(q, k, v, attention_mask, head_mask)
        outputs = (attn_output.transpose(1, 2).reshape(b, n, c),)
        if output_attentions:
            outputs += (attn_weights,)
        return outputs
${extra}`;

describe('attention in a helper that always returns its probabilities (GPT-2)', () => {
  it('the helper takes a flag its caller sets to output_attentions; runs the kernel when it is off; verifies in torch', () => {
    const dir = tempProject({ 'a.py': gpt2() });
    const out = join(dir, 'a_rw.py');
    expect(adopt(['rewrite', join(dir, 'a.py'), '--rules', 'attention', '-o', out]).code).toBe(0);
    const text = readFileSync(out, 'utf8');
    expect(unwrapped(text)).toContain('def _attn(self, query, key, value, attention_mask=None, head_mask=None, _adopt_need_attn_weights=True):');
    expect(unwrapped(text)).toContain("self._attn(q, k, v, attention_mask, head_mask, **({'_adopt_need_attn_weights': output_attentions} if getattr(self._attn, '_adopt_takes_need_attn_weights', False) else {}))");
    // the mask value and the scale read the scores' dtype and device off the query and key
    expect(unwrapped(text)).not.toMatch(/_adopt\.attention\([^\n]*attn_weights\.dtype/);
    expect(unwrapped(text)).toMatch(/keep=causal_mask, keep_fill=mask_value\)/);
    expectVerified(join(dir, 'a.py'), out, 'CausalSelfAttention', true);
    expectVerified(join(dir, 'a.py'), out, 'CausalSelfAttention', false, '{"is_cross_attention": true}');
  }, 120_000);

  it('is not rewritten when a subclass overrides the helper, or when the caller always reads the probabilities', () => {
    const sub = '\n\nclass Other(CausalSelfAttention):\n    def _attn(self, query, key, value, attention_mask=None, head_mask=None):\n        return super()._attn(query, key, value, attention_mask, head_mask)\n';
    const always = gpt2().replace('        if output_attentions:\n            outputs += (attn_weights,)', '        outputs += (attn_weights,)');
    for (const [src, why] of [[gpt2(sub), /a subclass of CausalSelfAttention overrides _attn/], [always, /no call of self\._attn reads 'attn_weights' only under a condition/]] as const) {
      const dir = tempProject({ 'a.py': src });
      const j = JSON.parse(adopt(['rewrite', '--json', '--rules', 'attention', join(dir, 'a.py')]).stdout);
      const site = j.sites.find((x: { rule: string }) => x.rule === 'attention');
      expect(site.decision).toBe('skipped');
      expect(unwrapped(site.reason)).toMatch(why);
    }
  });

  it('passes the flag only from the class and its subclasses: another class with a method of that name is left alone', () => {
    const other = '\n\nclass Other(nn.Module):\n    def _attn(self, x):\n        return x, x\n\n    def forward(self, x, output_attentions=False):\n        a, w = self._attn(x)\n        if output_attentions:\n            return a, w\n        return (a,)\n';
    const dir = tempProject({ 'a.py': gpt2(other) });
    const out = join(dir, 'a_rw.py');
    expect(adopt(['rewrite', join(dir, 'a.py'), '--rules', 'attention', '-o', out]).code).toBe(0);
    const text = readFileSync(out, 'utf8');
    expect(unwrapped(text)).toContain('a, w = self._attn(x)\n');
    expect(unwrapped(text)).toContain("**({'_adopt_need_attn_weights': output_attentions} if getattr(self._attn, '_adopt_takes_need_attn_weights', False) else {}))");
    expectVerified(join(dir, 'a.py'), out, 'CausalSelfAttention', true);
  });

  it('does not write out an operand that reads what the replaced statements compute', () => {
    // the scale reads the scores' shape, not only their dtype: the fast path cannot have it
    const src = gpt2().replace('torch.full([], value.size(-1) ** 0.5,', 'torch.full([], attn_weights.size(-1) ** 0.5,');
    const dir = tempProject({ 'a.py': src });
    const j = JSON.parse(adopt(['rewrite', '--json', '--rules', 'attention', join(dir, 'a.py')]).stdout);
    const site = j.sites.find((x: { rule: string }) => x.rule === 'attention');
    expect(site.decision).toBe('skipped');
    expect(unwrapped(site.reason)).toMatch(/'attn_weights' read at line \d+ is computed by the original statements, which the fast path does not run/);
  });
});

describe('a padding mask expanded to the scores\' shape between the scores and their fill (DistilBERT)', () => {
  const src = `import math

import torch
from torch import nn


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, dim=32, n_heads=4):
        super().__init__()
        self.n_heads, self.dim = n_heads, dim
        self.q_lin, self.k_lin, self.v_lin = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x, mask=None):
        bs, q_length, dim = x.size()
        if mask is None:
            mask = torch.ones(bs, q_length)
            mask[-1, -1] = 0
        dim_per_head = self.dim // self.n_heads
        mask_reshp = (bs, 1, 1, q_length)

        def shape(t):
            return t.view(bs, -1, self.n_heads, dim_per_head).transpose(1, 2)

        q, k, v = shape(self.q_lin(x)), shape(self.k_lin(x)), shape(self.v_lin(x))
        q = q / math.sqrt(dim_per_head)
        scores = torch.matmul(q, k.transpose(2, 3))
        mask = (mask == 0).view(mask_reshp).expand_as(scores)
        scores = scores.masked_fill(mask, torch.tensor(torch.finfo(scores.dtype).min))
        weights = nn.functional.softmax(scores, dim=-1)
        weights = self.dropout(weights)
        context = torch.matmul(weights, v)
        return context.transpose(1, 2).reshape(bs, -1, self.dim)
`;

  it('runs the expansion first, to the shape the operands give, and verifies in torch', () => {
    const dir = tempProject({ 'd.py': src });
    const out = join(dir, 'd_rw.py');
    expect(adopt(['rewrite', join(dir, 'd.py'), '--rules', 'attention', '-o', out]).code).toBe(0);
    const text = readFileSync(out, 'utf8');
    expect(unwrapped(text)).toContain('mask = (mask == 0).view(mask_reshp).expand(torch.broadcast_shapes(q.shape[:-2], k.transpose(2, 3).shape[:-2]) + (q.shape[-2], k.transpose(2, 3).shape[-1]))');
    expect(unwrapped(text)).toMatch(/fill_mask=mask, fill_value=torch\.tensor\(torch\.finfo\(_adopt\.product_dtype\(q, k\.transpose\(2, 3\)\)\)/);
    expectVerified(join(dir, 'd.py'), out, 'MultiHeadSelfAttention', true);
  });
});

describe('attention whose forward always returns its probabilities, read by the block only when asked', () => {
  const src = `import math

import torch
from torch import nn


class Attn(nn.Module):
    def __init__(self, hidden=32, heads=4):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.qkv = nn.Linear(hidden, 3 * hidden)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        probs = scores.softmax(dim=-1)
        out = torch.matmul(probs, v)
        return out.transpose(1, 2).reshape(b, n, c), probs


class Block(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.attn = Attn(hidden)

    def forward(self, x, output_attentions=False):
        h, w = self.attn(
            x,
        )
        if output_attentions:
            return x + h, w
        return (x + h,)
`;

  it('forward takes the flag, the block passes output_attentions through the module call, and it verifies in torch', () => {
    const dir = tempProject({ 'a.py': src });
    const out = join(dir, 'a_rw.py');
    expect(adopt(['rewrite', join(dir, 'a.py'), '--rules', 'attention', '-o', out]).code).toBe(0);
    const text = readFileSync(out, 'utf8');
    expect(unwrapped(text)).toContain('    def forward(self, x, _adopt_need_probs=True):');
    expect(unwrapped(text)).toContain("        h, w = self.attn(\n            x,\n            **({'_adopt_need_probs': output_attentions} if getattr(self.attn.forward, '_adopt_takes_need_probs', False) else {}),\n        )");
    expectVerified(join(dir, 'a.py'), out, 'Block', true);
  });
});

describe('attention with a causal buffer filled by masked_fill (nanoGPT)', () => {
  it('passes the fill to the kernel and verifies in torch', () => {
    const dir = tempProject({});
    const src = join(repoRoot, 'fixtures', 'models', 'nanogpt.py');
    const out = join(dir, 'rw.py');
    expect(adopt(['rewrite', src, '--rules', 'attention', '-o', out]).code).toBe(0);
    expect(unwrapped(readFileSync(out, 'utf8'))).toContain('fill_mask=self.bias[:, :, :T, :T] == 0, fill_value=float("-inf"))');
    expectVerified(src, out, 'CausalSelfAttention', true);
  }, 120_000);
});

// T5's attention: k/v projected by a nested helper that returns a value merged from branches, a
// position bias built from the scores' device and dtype between the scores and their use, pruned
// heads under if/else, no scaling, and the probabilities returned when output_attentions.
const t5 = `import torch
from torch import nn


class T5LikeAttention(nn.Module):
    def __init__(self, d_model=16, n_heads=2):
        super().__init__()
        self.n_heads, self.d_kv = n_heads, d_model // n_heads
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.k = nn.Linear(d_model, d_model, bias=False)
        self.v = nn.Linear(d_model, d_model, bias=False)
        self.o = nn.Linear(d_model, d_model, bias=False)
        self.relative_attention_bias = nn.Embedding(8, n_heads)
        self.pruned_heads = set()
        self.dropout = 0.0

    def forward(self, hidden_states, mask=None, key_value_states=None, position_bias=None, output_attentions=False):
        batch_size, seq_length = hidden_states.shape[:2]

        def shape(states):
            return states.view(batch_size, -1, self.n_heads, self.d_kv).transpose(1, 2)

        def project(hidden_states, proj_layer, key_value_states):
            if key_value_states is None:
                hidden_states = shape(proj_layer(hidden_states))
            else:
                hidden_states = shape(proj_layer(key_value_states))
            return hidden_states

        query_states = shape(self.q(hidden_states))
        key_states = project(hidden_states, self.k, key_value_states)
        value_states = project(hidden_states, self.v, key_value_states)

        scores = torch.matmul(query_states, key_states.transpose(3, 2))

        if position_bias is None:
            pos = torch.arange(key_states.shape[2], device=scores.device) % 8
            position_bias = self.relative_attention_bias(pos)[None, :, None, :].permute(0, 3, 1, 2).to(scores.dtype)
            if mask is not None:
                position_bias = position_bias + mask

        if self.pruned_heads:
            keep = torch.ones(position_bias.shape[1])
            keep[list(self.pruned_heads)] = 0
            position_bias_masked = position_bias[:, keep.bool()]
        else:
            position_bias_masked = position_bias

        scores += position_bias_masked
        attn_weights = nn.functional.softmax(scores.float(), dim=-1).type_as(scores)
        attn_weights = nn.functional.dropout(attn_weights, p=self.dropout, training=self.training)
        attn_output = self.o(torch.matmul(attn_weights, value_states).transpose(1, 2).reshape(batch_size, -1, self.n_heads * self.d_kv))
        outputs = (attn_output, position_bias)
        if output_attentions:
            outputs = outputs + (attn_weights,)
        return outputs
`;

describe("attention around T5's position bias", () => {
  it("runs the bias first (reading the query's device and dtype), names the value the helper returned, and verifies in torch", () => {
    const dir = tempProject({ 't5.py': t5 });
    const run = runRewrite([join(dir, 't5.py')], { rules: 'attention' });
    expect(run.sites[0]).toMatchObject({ rule: 'attention', decision: 'rewritten' });
    const out = run.files[0].rewritten;
    const lines = unwrapped(out).split('\n');
    const guardAt = lines.findIndex((l) => l.includes("_adopt.enabled('attention')"));
    const before = lines.slice(0, guardAt).join('\n');
    // the bias and the pruned heads run first, the bias reading the query's device and dtype
    expect(unwrapped(before)).toContain('pos = torch.arange(key_states.shape[2], device=query_states.device) % 8');
    // the dtype is what the product gives (autocast included): read by the package without a
    // product, or probed on one element where the package is missing (this runs on both paths)
    expect(unwrapped(before)).toContain('.permute(0, 3, 1, 2).to((_adopt.product_dtype(query_states, key_states.transpose(3, 2)) if _adopt is not None else torch.matmul(query_states[..., :1, :], key_states.transpose(3, 2)[..., :, :1]).dtype))');
    expect(unwrapped(before)).toContain('position_bias_masked = position_bias[:, keep.bool()]');
    expect(unwrapped(lines[guardAt])).toContain('not output_attentions');
    // the key the source transposed by (3, 2) goes to the kernel as it was, not transposed twice
    expect(unwrapped(lines[guardAt + 1])).toContain('_adopt.attention(query_states, key_states, value_states, mask=position_bias_masked');
    writeFileSync(join(dir, 't5_rw.py'), out);
    const r = adopt(['verify', join(dir, 't5.py'), join(dir, 't5_rw.py'), '--class', 'T5LikeAttention', '--shape', '2,5,16', '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ verified: true });
  });
});
