// A rewrite gives a method that always returns its probabilities a keyword parameter
// (`_attn(..., _adopt_need_attn_weights=True)`, an attention module's `forward(x,
// _adopt_need_attn=True)`) that the file's callers set. Code the rewrite cannot see may put
// another callee in its place: a subclass of another file overriding `_attn` with the original
// signature, a module swapped in at run time (`layer.attn = MemEffAttention()`, DINOv2's
// `forward(x)`), a patch of the class's method. Such a callee must be called as the original file
// calls it (no keyword it does not take), and compute what the original computes.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../src/pipeline/index.js';
import { besideOriginal } from './helpers/beside-original.js';
import { tempProject } from './helpers/ir.js';

const MODEL = `import math

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.h, self.d = heads, dim // heads
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)

    def _attn(self, query, key, value, attention_mask=None):
        attn_weights = torch.matmul(query, key.transpose(-1, -2))
        attn_weights = attn_weights / math.sqrt(value.size(-1))
        if attention_mask is not None:
            attn_weights = attn_weights + attention_mask
        attn_weights = F.softmax(attn_weights, dim=-1)
        attn_output = torch.matmul(attn_weights, value)
        return attn_output, attn_weights

    def forward(self, x, attention_mask=None, output_attentions=False):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.h, self.d).transpose(1, 2) for t in (q, k, v))
        attn_output, attn_weights = self._attn(q, k, v, attention_mask)
        attn_output = self.c_proj(attn_output.transpose(1, 2).reshape(B, T, C))
        outputs = (attn_output,)
        if output_attentions:
            outputs += (attn_weights,)
        return outputs


class Block(nn.Module):
    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)

    def forward(self, x, output_attentions=False):
        out = self.attn(self.ln(x), output_attentions=output_attentions)
        return (x + out[0],) + out[1:]


class SelfAttention(nn.Module):
    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.h, self.d = heads, dim // heads
        self.scale = self.d ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.h, self.d).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x), attn


class EncoderLayer(nn.Module):
    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)

    def forward(self, x, output_attentions=False):
        h, w = self.attn(self.norm(x))
        x = x + h
        if output_attentions:
            return x, w
        return x, None
`;

// Runs the original and the rewritten file, with the same weights and each callee put in place
// the same way, and prints per case the largest difference, any exception, and whether the
// rewritten file took the fused attention.
const CHECK = `
import math, torch
from torch import nn
from adopt_harness.counting import FastPathCounter

def biased(mod):
    class BiasedAttention(mod.Attention):  # another file's subclass: the original signature
        def _attn(self, query, key, value, attention_mask=None):
            w = (query @ key.transpose(-1, -2) / math.sqrt(value.size(-1)) + 0.1).softmax(-1)
            return w @ value, w
    return BiasedAttention

def mem_eff(mod):
    class MemEffAttention(mod.SelfAttention):  # DINOv2's replacement: forward(x) only
        def forward(self, x):
            out, attn = super().forward(x)
            return out * 2, attn
    return MemEffAttention

def patched_attn(self, query, key, value, attention_mask=None):  # set on the class itself
    w = (query @ key.transpose(-1, -2)).softmax(-1)
    return w @ value, w

def patched_forward(self, x):
    return self.proj(x), x.new_ones(x.shape[0], self.h, x.shape[1], x.shape[1])

def wrapped_forward(layer):  # a forward set on the instance, taking what its module passes
    inner = layer.attn.forward
    return lambda *args, **kwargs: inner(*args, **kwargs)

BLOCKS = {
    "plain": lambda mod, b: None,
    "subclass overriding _attn": lambda mod, b: setattr(b, "attn", biased(mod)()),
    "_attn patched on the class": lambda mod, b: setattr(mod.Attention, "_attn", patched_attn),
}
LAYERS = {
    "plain": lambda mod, l: None,
    "module swapped in": lambda mod, l: setattr(l, "attn", mem_eff(mod)()),
    "forward patched on the class": lambda mod, l: setattr(mod.SelfAttention, "forward", patched_forward),
    "forward set on the instance": lambda mod, l: setattr(l.attn, "forward", wrapped_forward(l)),
}

def outputs(cls_name, change, path, name, output_attentions):
    mod = load(path, name)
    torch.manual_seed(0)
    model = getattr(mod, cls_name)()
    change(mod, model)
    model.double()
    x = torch.randn(2, 5, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with FastPathCounter("attention") as c:
        try:
            out = model(x, output_attentions=output_attentions)
        except Exception as e:
            return None, f"{type(e).__name__}: {e}", c.calls
    return [t for t in out if t is not None], None, c.calls

res = {}
for cls_name, cases in (("Block", BLOCKS), ("EncoderLayer", LAYERS)):
    for case, change in cases.items():
        for flag in (False, True):
            a, err_a, _ = outputs(cls_name, change, ORIGINAL, "orig", flag)
            b, err_b, fused = outputs(cls_name, change, REWRITTEN, "rewritten", flag)
            diff = max((x - y).abs().max().item() for x, y in zip(a, b)) if a and b and len(a) == len(b) else None
            res[f"{cls_name}: {case}, output_attentions={flag}"] = {"error": err_a or err_b, "diff": diff, "fused": fused}
print(json.dumps(res))
`;

describe('a keyword the rewrite adds goes only to the method it was added to', () => {
  it('an override of another file, a module swapped in and a patched method are called as the original calls them', () => {
    const dir = tempProject({ 'm.py': MODEL });
    const run = runRewrite([join(dir, 'm.py')], { rules: 'attention' });
    const text = run.files[0].rewritten;
    expect(text).toContain('_adopt_need_attn_weights=True');
    expect(text).toContain('def forward(self, x, _adopt_need_attn=True):');
    writeFileSync(join(dir, 'rw.py'), text);
    const res = besideOriginal<Record<string, { error: string | null; diff: number | null; fused: number }>>(join(dir, 'm.py'), join(dir, 'rw.py'), CHECK);
    for (const [what, d] of Object.entries(res)) {
      expect(d.error, what).toBeNull();
      expect(d.diff, what).not.toBeNull();
      expect(d.diff!, what).toBeLessThan(1e-9);
    }
    // the rewritten methods themselves still take the fused path when the weights are not wanted
    expect(res['Block: plain, output_attentions=False'].fused).toBeGreaterThan(0);
    expect(res['EncoderLayer: plain, output_attentions=False'].fused).toBeGreaterThan(0);
    expect(res['Block: plain, output_attentions=True'].fused).toBe(0);
  });
});
