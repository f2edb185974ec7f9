// A rewrite computes an attention's nn.Softmax and an LM head's loss module itself, as __init__
// built them. A user may change them afterwards: set a setting, give the loss class weights, or
// put another module in its place. The rewritten model must then compute what the original
// computes, which the `built_with` guard ensures by sending such calls down the original code.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../src/pipeline/index.js';
import { besideOriginal } from './helpers/beside-original.js';
import { tempProject } from './helpers/ir.js';

const model = (loss: string) => `import torch
from torch import nn


class AttnLM(nn.Module):
    def __init__(self, vocab_size=40, hidden_size=16, heads=2, pad_token_id=-100):
        super().__init__()
        self.heads = heads
        self.embed = nn.Embedding(vocab_size, hidden_size)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.attend = nn.Softmax(dim=-1)
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)
        self.loss_fct = ${loss}

    def forward(self, ids, labels=None):
        h = self.embed(ids)
        b, n, d = h.shape
        q, k, v = self.qkv(h).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        probs = self.attend(torch.matmul(q, k.transpose(-1, -2)) * 0.5)
        h = h + torch.matmul(probs, v).transpose(1, 2).reshape(b, n, d)
        logits = self.lm_head(h)
        loss = None
        if labels is not None:
            loss = self.loss_fct(logits.view(-1, logits.size(-1)), labels.view(-1))
        return loss, logits
`;

// Builds the original and the rewritten model with the same weights, applies one change to both,
// and prints the largest difference of loss and logits and which path the rewritten one took.
const CHECK = `
import torch
from torch import nn
from adopt_harness.counting import FastPathCounter

class Recording(nn.Softmax):
    def forward(self, x):
        self.seen = True
        return super().forward(x) * 0.5

CHANGES = {
    "none": lambda m: None,
    "softmax dim": lambda m: setattr(m.attend, "dim", 1),
    "softmax swapped": lambda m: setattr(m, "attend", Recording(dim=-1)),
    "softmax identity": lambda m: setattr(m, "attend", nn.Identity()),
    "ignore_index": lambda m: setattr(m.loss_fct, "ignore_index", 3),
    "reduction": lambda m: setattr(m.loss_fct, "reduction", "sum"),
    "class weights": lambda m: setattr(m, "loss_fct", nn.CrossEntropyLoss(weight=torch.linspace(0.5, 2.0, 40, dtype=torch.float64))),
    "label smoothing": lambda m: setattr(m.loss_fct, "label_smoothing", 0.2),
}
orig_cls, new_cls = load(ORIGINAL, "orig").AttnLM, load(REWRITTEN, "rewritten").AttnLM
ids = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(0))
labels = ids.roll(1, 1)
out = {}
for name, change in CHANGES.items():
    torch.manual_seed(0)
    a = orig_cls().double()
    b = new_cls().double()
    b.load_state_dict(a.state_dict())
    change(a); change(b)
    a.double(); b.double()
    with FastPathCounter("attention") as attn, FastPathCounter("linear_cross_entropy") as lce:
        lb, gb = b(ids, labels)
    calls = [k for k, c in (("attention", attn), ("linear_cross_entropy", lce)) if c.calls]
    la, ga = a(ids, labels)
    out[name] = {"loss": abs(la.item() - lb.item()), "logits": (ga - gb).abs().max().item(), "fused": sorted(calls)}
print(json.dumps(out))
`;

describe('modules changed after construction', () => {
  const cases: [string, string, RegExp][] = [
    ['constant settings', 'nn.CrossEntropyLoss()', /_adopt\.built_with\(self\.loss_fct, "torch\.nn\.CrossEntropyLoss"\)/],
    // __init__'s own names are not the forward's: the setting is read off the module
    ['a setting from __init__\'s arguments', 'nn.CrossEntropyLoss(ignore_index=pad_token_id)', /_adopt\.built_with\(\s*self\.loss_fct, "torch\.nn\.CrossEntropyLoss", as_set=\("ignore_index",\)\s*\)[\s\S]*ignore_index=self\.loss_fct\.ignore_index/],
  ];
  for (const [what, loss, guard] of cases) {
    it(`${what}: the rewritten model computes what the original does after each change, and the fused path where nothing changed`, () => {
      const dir = tempProject({ 'm.py': model(loss) });
      const run = runRewrite([join(dir, 'm.py')], {});
      const text = run.files[0].rewritten;
      expect(text).toMatch(/_adopt\.attention\(/);
      expect(text).toMatch(/_adopt\.linear_cross_entropy\(/);
      expect(text).toMatch(/_adopt\.built_with\(self\.attend, "torch\.nn\.Softmax", dim=-1\)/);
      expect(text).toMatch(guard);
      writeFileSync(join(dir, 'rw.py'), text);
      const res = besideOriginal<Record<string, { loss: number; logits: number; fused: string[] }>>(join(dir, 'm.py'), join(dir, 'rw.py'), CHECK);
      for (const [change, d] of Object.entries(res) as [string, { loss: number; logits: number }][]) {
        expect(d.loss, change).toBeLessThan(1e-9);
        expect(d.logits, change).toBeLessThan(1e-9);
      }
      // unchanged, both fused paths ran: the guard does not turn the rewrite off
      expect(res.none.fused).toEqual(expect.arrayContaining(['attention', 'linear_cross_entropy']));
      expect(res['softmax dim'].fused).not.toContain('attention');
      expect(res['class weights'].fused).not.toContain('linear_cross_entropy');
    });
  }
});
