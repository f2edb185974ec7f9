import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../src/cli/rewrite.js';
import { adopt } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

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
    const guard = out.split('\n').find((l) => l.includes("_adopt.enabled('attention')"))!;
    // the relative-position branch does nothing when its condition is false
    expect(guard).toContain('not (self.position_embedding_type == "relative_key")');
    // the head mask is not covered by the kernel: the fast path runs without one
    expect(guard).toContain('not (head_mask is not None)');
    // the probabilities are read later only when output_attentions
    expect(guard).toContain('not output_attentions');
    expect(out).toContain('attention_probs = None  # adopt: read only when output_attentions');
    // the scale is the divisor, not the scores carried through the branch
    expect(out).toContain('scale=1.0 / (math.sqrt(self.head_size))');
  });

  it('the rewrite verifies in torch, on the fast path and with the relative branch taken', () => {
    const dir = tempProject({ 'a.py': src });
    const out = join(dir, 'a_rw.py');
    expect(adopt(['rewrite', join(dir, 'a.py'), '--rules', 'attention', '-o', out]).code).toBe(0);
    const r = adopt(['verify', join(dir, 'a.py'), out, '--class', 'SelfAttention', '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.classes[0]).toMatchObject({ status: 'verified' });
    expect(j.classes[0].fast_path_calls).toBeGreaterThan(0);
    const rel = adopt(['verify', join(dir, 'a.py'), out, '--class', 'SelfAttention', '--config', '{"position_embedding_type": "relative_key"}', '--json']);
    expect(JSON.parse(rel.stdout).classes[0]).toMatchObject({ status: 'verified', fast_path_calls: 0 });
  });

  it('is not rewritten when the mask branch holds other code (a reshaped mask)', () => {
    const reshaped = bert('            if attention_mask.ndim == 3:\n                attention_mask = attention_mask.unsqueeze(1)');
    const dir = tempProject({ 'b.py': reshaped });
    writeFileSync(join(dir, 'b.py'), reshaped);
    const run = runRewrite([join(dir, 'b.py')], { rules: 'attention' });
    expect(run.sites[0].decision).toBe('skipped');
    expect(run.sites[0].reason).toMatch(/the branch around the matched code holds statements outside the pattern/);
  });
});
