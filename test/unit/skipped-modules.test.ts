// A submodule the fast path computes without calling (an attention's nn.Softmax, a loss module)
// is stood in for only where it is still what __init__ built: the guard asks `built_with` (its
// class, no hooks, every setting as the constructor call the rewrite read leaves it), so a hook
// on it, a setting changed later or another module put in its place keeps the original code.
// Where that call is not constants, `runs_its_forward`. A module handed to the kernel, or one
// the rewrite leaves to run, needs no guard.
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

/** A language model whose loss module __init__ builds with `loss` (it keeps a `reduction` of its own). */
const tinyLm = (loss: string) => `import torch
from torch import nn


class TinyLM(nn.Module):
    def __init__(self, vocab_size=40, hidden_size=16, reduction="mean"):
        super().__init__()
        self.reduction = reduction
        self.embed = nn.Embedding(vocab_size, hidden_size)
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)
        self.loss_fct = ${loss}

    def forward(self, ids, labels=None):
        logits = self.lm_head(self.embed(ids))
        loss = None
        if labels is not None:
            loss = self.loss_fct(logits.view(-1, logits.size(-1)), labels.view(-1))
        return loss, logits
`;

describe('guards for submodules the fast path does not call', () => {
  it('an nn.Softmax module inside a rewritten attention: guarded by built_with and its constructor call', () => {
    const text = rewrite(attention('self.attend(dots)', '        self.attend = nn.Softmax(dim=-1)'), 'attention');
    expect(text).toMatch(/_adopt\.attention\(/);
    expect(text).toMatch(/and _adopt\.built_with\(self\.attend, "torch\.nn\.Softmax", dim=-1\)/);
    expect(text).not.toMatch(/runs_its_forward/);
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

  it('a positional constructor argument is restated as written', () => {
    const text = rewrite(attention('self.attend(dots)', '        self.attend = nn.Softmax(-1)'), 'attention');
    expect(text).toMatch(/_adopt\.built_with\(self\.attend, "torch\.nn\.Softmax", -1\)/);
  });

  it("a loss module the fused LM head computes is guarded too (its call's value is not the module)", () => {
    const text = rewrite(tinyLm('nn.CrossEntropyLoss(ignore_index=-100, reduction="sum")'), 'lm_head_ce');
    expect(text).toMatch(/_adopt\.linear_cross_entropy\(/);
    expect(text).toMatch(/_adopt\.built_with\(\s*self\.loss_fct,\s*"torch\.nn\.CrossEntropyLoss",\s*ignore_index=-100,\s*reduction="sum",?\s*\)/);
  });

  it('a constructor argument read from the module itself is restated as that attribute', () => {
    const text = rewrite(tinyLm('nn.CrossEntropyLoss(reduction=self.reduction)'), 'lm_head_ce');
    expect(text).toMatch(/_adopt\.built_with\(\s*self\.loss_fct,\s*"torch\.nn\.CrossEntropyLoss",\s*reduction=self\.reduction,?\s*\)/);
  });
});

describe('a file that names _adopt itself', () => {
  it('is not rewritten, with the reason: the guards would read its own _adopt as the kernels', () => {
    const src = 'import torch\nfrom torch import nn\n\n_adopt = "mine"\n\n\nclass M(nn.Module):\n    def forward(self, x):\n        return torch.softmax(x, dim=-1)\n';
    const dir = tempProject({ 'm.py': src });
    const run = runRewrite([`${dir}/m.py`], { rules: 'softmax' });
    expect(run.sites[0]).toMatchObject({ decision: 'skipped', reason: 'the file uses the name _adopt for something of its own, and the rewrite binds it to adopt_kernels' });
    expect(run.files[0]?.rewritten ?? src).toBe(src);
    // an attribute of that name is no binding of the module's
    const attr = src.replace('_adopt = "mine"', 'class Holder:\n    pass\n\n\nHolder()._adopt = 1');
    const ok = runRewrite([`${tempProject({ 'm.py': attr })}/m.py`], { rules: 'softmax' });
    expect(ok.sites[0].decision).toBe('rewritten');
  });
});

describe("adopt's own checks on a rule that calls torch alone", () => {
  it('come after `_adopt is not None`, so the rewritten file runs without the package', () => {
    const rule = 'rule drop_to_identity\n  match\n    y = Dropout($x, ...)\n  rewrite expr y\n    "{x}"\n  kernel cpu torch "torch.nn.functional.dropout"\n';
    const src = 'import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 4)\n        self.drop = nn.Dropout(0.0)\n\n    def forward(self, x):\n        return self.drop(self.fc(x))\n';
    const dir = tempProject({ 'm.py': src, 'r.rule': rule });
    const text = runRewrite([`${dir}/m.py`], { rules: `${dir}/r.rule`, builtinRules: false }).files[0].rewritten;
    expect(text).toContain('return (self.fc(x) if _adopt is not None and _adopt.built_with(self.drop, "torch.nn.Dropout", 0.0) else self.drop(self.fc(x)))');
  });
});
