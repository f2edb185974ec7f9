// The keyword a rewrite adds to a helper (`_attn(..., _adopt_need_attn_weights=True)`) or to an
// attention module's forward is passed by the file's callers only to a callee that carries the
// rewrite's mark: an override of another file, a module swapped in or a patched method does not
// take the keyword and is called as the original file calls it.
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/pipeline/index.js';
import { tempProject } from '../helpers/ir.js';

const HELPER = `import math

import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.h, self.d = heads, dim // heads
        self.c_attn = nn.Linear(dim, 3 * dim)

    def _attn(self, query, key, value, attention_mask=None):
        attn_weights = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(value.size(-1))
        if attention_mask is not None:
            attn_weights = attn_weights + attention_mask
        attn_weights = attn_weights.softmax(dim=-1)
        attn_output = torch.matmul(attn_weights, value)
        return attn_output, attn_weights  # both, always

    def forward(self, x, attention_mask=None, output_attentions=False):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.h, self.d).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        attn_output, attn_weights = self._attn(q, k, v, attention_mask)
        if output_attentions:
            return attn_output, attn_weights
        return (attn_output,)
`;

const MODULE = `import torch
from torch import nn


class SelfAttention(nn.Module):
    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.h, self.d = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.h, self.d).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)) * self.d ** -0.5
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return x, attn


class EncoderLayer(nn.Module):
    def __init__(self, dim=32):
        super().__init__()
        self.attn = SelfAttention(dim)

    def forward(self, x, output_attentions=False):
        h, w = self.attn(
            x,
        )
        if output_attentions:
            return x + h, w
        return x + h, None
`;

function rewritten(src: string): string {
  const dir = tempProject({ 'm.py': src });
  const run = runRewrite([`${dir}/m.py`], { rules: 'attention' });
  const site = run.sites.find((s) => s.rule === 'attention')!;
  expect(site.decision, site.reason).toBe('rewritten');
  return run.files[0].rewritten;
}

describe('the keyword a rewrite adds is passed only to the callee it was added to', () => {
  it("a helper method: the caller checks the bound method's mark, set right after the method", () => {
    const text = rewritten(HELPER);
    expect(text).toContain('    def _attn(self, query, key, value, attention_mask=None, _adopt_need_attn_weights=True):\n');
    expect(text).toContain(
      "        attn_output, attn_weights = self._attn(q, k, v, attention_mask, **({'_adopt_need_attn_weights': output_attentions} if getattr(self._attn, '_adopt_takes_need_attn_weights', False) else {}))\n",
    );
    // after the method's last line (its comment included), at the class body's indentation
    expect(text).toContain(
      '        return attn_output, attn_weights  # both, always\n\n    _attn._adopt_takes_need_attn_weights = True  # adopt: callers pass _adopt_need_attn_weights to this _attn alone, not to an override or a module swapped in\n\n    def forward(',
    );
    // nothing passes the bare keyword
    expect(text).not.toMatch(/[(,]\s*_adopt_need_attn_weights=output_attentions/);
  });

  it("an attention module's forward: the module call checks the forward it runs, one argument a line", () => {
    const text = rewritten(MODULE);
    expect(text).toContain('    def forward(self, x, _adopt_need_attn=True):\n');
    expect(text).toContain(
      "        h, w = self.attn(\n            x,\n            **({'_adopt_need_attn': output_attentions} if getattr(self.attn.forward, '_adopt_takes_need_attn', False) else {}),\n        )\n",
    );
    expect(text).toMatch(/\n {4}forward\._adopt_takes_need_attn = True {2}# adopt: [^\n]*\n\n\nclass EncoderLayer/);
  });

  it('rewriting the rewritten file again changes nothing', () => {
    for (const src of [HELPER, MODULE]) {
      const once = rewritten(src);
      const dir = tempProject({ 'm.py': once });
      const again = runRewrite([`${dir}/m.py`], { rules: 'attention' });
      expect(again.files[0].rewritten).toBe(once);
    }
  });
});
