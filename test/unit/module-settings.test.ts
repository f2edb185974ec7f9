// A rewrite that reads a submodule's settings from its constructor (a Softmax's dim, a loss's
// reduction) is right only where that constructor is the one every instance runs: not where
// __init__ builds the submodule in several ways, changes a setting after building it, or a
// subclass that inherits the method builds it otherwise.
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/pipeline/index.js';
import { tempProject } from '../helpers/ir.js';

function rewrite(source: string, rules: string) {
  const dir = tempProject({ 'm.py': source });
  const run = runRewrite([`${dir}/m.py`], { rules, whyNot: true });
  return { run, text: run.files[0]?.rewritten ?? source, misses: run.nearMisses.map((n) => n.reason).join('\n') };
}

const mixer = (init: string) => `import torch
from torch import nn


class Mixer(nn.Module):
    def __init__(self, dim=16, over_tokens=False):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
${init}

    def forward(self, x):
        return self.attend(self.fc(x))
`;

const lm = (init: string, subclass = '') => `import torch
from torch import nn


class LM(nn.Module):
    def __init__(self, dim=16, vocab_size=50, label_smoothing=0.0):
        super().__init__()
        self.vocab_size = vocab_size
        self.emb = nn.Embedding(vocab_size, dim)
        self.lm_head = nn.Linear(dim, vocab_size)
${init}

    def forward(self, ids, labels):
        logits = self.lm_head(self.emb(ids))
        loss = self.loss_fct(logits.view(-1, self.vocab_size), labels.view(-1))
        return loss, logits
${subclass}`;

describe('settings read from a constructor', () => {
  it('one constructor: read, and the site rewritten', () => {
    const { text } = rewrite(mixer('        self.attend = nn.Softmax(dim=-1)'), 'softmax');
    expect(text).toMatch(/_adopt\.softmax\(self\.fc\(x\), dim=-1\)/);
  });

  it('a dim chosen by an if in __init__: not known, the site refused with the lines that build it', () => {
    const { text, misses } = rewrite(mixer(`        if over_tokens:
            self.attend = nn.Softmax(dim=1)
        else:
            self.attend = nn.Softmax(dim=-1)`), 'softmax');
    expect(text).not.toMatch(/_adopt\.softmax/);
    expect(misses).toMatch(/self\.attend is built in 2 ways in __init__ \(lines 10, 12\)/);
  });

  it('a default then a conditional override: not known either', () => {
    const { text } = rewrite(mixer(`        self.attend = nn.Softmax(dim=-1)
        if over_tokens:
            self.attend = nn.Softmax(dim=1)`), 'softmax');
    expect(text).not.toMatch(/_adopt\.softmax/);
  });

  it('the same constructor on both branches is one setting', () => {
    const { text } = rewrite(mixer(`        if over_tokens:
            self.attend = nn.Softmax(dim=-1)
        else:
            self.attend = nn.Softmax(dim=-1)`), 'softmax');
    expect(text).toMatch(/_adopt\.softmax\(self\.fc\(x\), dim=-1\)/);
  });

  it('a loss chosen by an if (label smoothing on one branch): refused', () => {
    const { text } = rewrite(lm(`        if label_smoothing > 0:
            self.loss_fct = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        else:
            self.loss_fct = nn.CrossEntropyLoss()`), 'lm_head_ce');
    expect(text).not.toMatch(/_adopt\.linear_cross_entropy/);
  });

  it('a setting changed after the module is built is read as its constructor argument', () => {
    const { text } = rewrite(lm(`        self.loss_fct = nn.CrossEntropyLoss()
        self.loss_fct.reduction = "sum"`), 'lm_head_ce');
    expect(text).toMatch(/reduction="sum"/);
  });

  it('a setting changed under an if is another way of building it: refused', () => {
    const { text } = rewrite(lm(`        self.loss_fct = nn.CrossEntropyLoss()
        if label_smoothing > 0:
            self.loss_fct.label_smoothing = label_smoothing`), 'lm_head_ce');
    expect(text).not.toMatch(/_adopt\.linear_cross_entropy/);
  });

  it('a subclass inheriting forward that builds the loss otherwise: refused, naming the subclass', () => {
    const sub = `

class SummedLM(LM):
    def __init__(self, dim=16, vocab_size=50):
        super().__init__(dim, vocab_size)
        self.loss_fct = nn.CrossEntropyLoss(reduction="sum")
`;
    const { text, misses } = rewrite(lm('        self.loss_fct = nn.CrossEntropyLoss()', sub), 'lm_head_ce');
    expect(text).not.toMatch(/_adopt\.linear_cross_entropy/);
    expect(misses).toMatch(/SummedLM \(a subclass that inherits forward\) builds self\.loss_fct otherwise/);
  });

  it('a subclass that builds it the same way keeps the site', () => {
    const sub = `

class BigLM(LM):
    def __init__(self, dim=32, vocab_size=50):
        super().__init__(dim, vocab_size)
        self.extra = nn.Linear(dim, dim)
`;
    const { text } = rewrite(lm('        self.loss_fct = nn.CrossEntropyLoss()', sub), 'lm_head_ce');
    expect(text).toMatch(/_adopt\.linear_cross_entropy/);
  });

  it('a weight tied under an if is no setting: the site stays', () => {
    const { text } = rewrite(lm(`        self.loss_fct = nn.CrossEntropyLoss()
        if label_smoothing == 0.0:
            self.lm_head.weight = self.emb.weight`), 'lm_head_ce');
    expect(text).toMatch(/_adopt\.linear_cross_entropy/);
  });

  it('a layer class chosen by a parameter, built in two ways: the run-time class check stays', () => {
    const { text } = rewrite(`import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, c=8, deep: bool = False, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        if deep:
            self.bn = norm_layer(c, eps=1e-3)
        else:
            self.bn = norm_layer(c)

    def forward(self, x):
        return self.bn(self.conv(x))
`, 'conv_bn');
    expect(text).toMatch(/_adopt\.conv_bn/);
    expect(text).toMatch(/_adopt\.built_as\(self\.bn, "torch\.nn\.BatchNorm2d"\)/);
  });

  const changedBy = (body: string, extra = '') => `import torch
from torch import nn


class M(nn.Module):
    def __init__(self):
        super().__init__()
${body}

    def forward(self, x):
        return self.sm(x)
${extra}`;

  it.each([
    ['through a local before storing it', '        sm = nn.Softmax(dim=-1)\n        sm.dim = 1\n        self.sm = sm', ''],
    ['by setattr', '        self.sm = nn.Softmax(dim=-1)\n        setattr(self.sm, "dim", 1)', ''],
    ['in a loop over submodules', '        self.sm = nn.Softmax(dim=-1)\n        for m in [self.sm]:\n            m.dim = 1', ''],
    ['in a method __init__ calls', '        self.sm = nn.Softmax(dim=-1)\n        self._setup()', '\n    def _setup(self):\n        self.sm.dim = 1\n'],
  ])('a setting changed %s: not read from the constructor', (_how, body, extra) => {
    expect(rewrite(changedBy(body, extra), 'softmax').text).not.toMatch(/_adopt\.softmax/);
  });

  it('a method __init__ calls that only sets weights keeps the site', () => {
    const extra = '\n    def _init_weights(self):\n        self.proj.weight.data = torch.zeros(4, 4)\n        self.proj.bias.requires_grad = False\n';
    const text = rewrite(changedBy('        self.proj = nn.Linear(4, 4)\n        self.sm = nn.Softmax(dim=-1)\n        self._init_weights()', extra), 'softmax').text;
    expect(text).toMatch(/_adopt\.softmax\(x, dim=-1\)/);
  });
});
