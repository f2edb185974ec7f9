import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzePaths } from '../src/analysis/analyze.js';
import { parseRules, RuleError } from '../src/match/rule.js';
import { runRewrite } from '../src/pipeline/index.js';
import { modelsDir } from './helpers/fixtures.js';
import { methodOf, moduleOf, opsOf, tempProject } from './helpers/ir.js';

const cnn = join(modelsDir, 'layer_class_cnn.py');
const lm = join(modelsDir, 'loss_helper_lm.py');

describe('layer classes passed as parameters', () => {
  const { program } = analyzePaths([cnn]);
  const attr = (cls: string, name: string) => moduleOf(program, cls).attrs.find((a) => a.name === name)!;
  const typeOf = (cls: string, callee: string) => opsOf(methodOf(moduleOf(program, cls)).body).find((o) => o.callee === callee)?.type;

  it('a parameter defaulting to a class: the call keeps its spelling, the default is recorded, forward sees the class', () => {
    expect(attr('ConvNormAct', 'bn').value).toMatchObject({ k: 'call', callee: 'norm_layer' });
    expect(attr('ConvNormAct', 'bn').defaults).toEqual([['norm_layer', { k: 'name', path: 'torch.nn.BatchNorm2d' }]]);
    expect(typeOf('ConvNormAct', 'self.bn')).toEqual(['torch.nn.BatchNorm2d']);
    expect(typeOf('Mlp', 'self.act')).toEqual(['torch.nn.GELU']);
  });

  it('`or partial(...)`, `if x is None: x = C` and a resolver that hands back its argument give the default class', () => {
    expect(typeOf('InvertedBlock', 'self.bn1')).toEqual(['torch.nn.BatchNorm2d']);
    expect(attr('HybridNet', 'bn_head').value).toMatchObject({ k: 'call', callee: 'norm_layer' });
    expect(typeOf('HybridNet', 'self.bn_head')).toEqual(['torch.nn.BatchNorm2d']);
    // another default class is that class, not a BatchNorm2d
    expect(typeOf('GroupNormBlock', 'self.norm')).toEqual(['torch.nn.GroupNorm']);
    expect(typeOf('SiluMlp', 'self.act')).toEqual(['torch.nn.SiLU']);
  });

  it('nn.Sequential(*[...]) and nn.Sequential(OrderedDict(...)) are chains of their elements', () => {
    const ops = opsOf(methodOf(moduleOf(program, 'HybridNet')).body);
    const stem = ops.filter((o) => o.callee.startsWith('self.stem['));
    expect(stem.map((o) => o.type)).toEqual([['torch.nn.Conv2d'], ['torch.nn.BatchNorm2d'], ['torch.nn.ReLU']]);
    const down = ops.filter((o) => o.callee.startsWith('self.down['));
    expect(down.map((o) => o.type)).toEqual([['torch.nn.AvgPool2d'], ['torch.nn.Conv2d'], ['torch.nn.BatchNorm2d']]);
  });

  it('in a function, `norm_layer or nn.BatchNorm2d` called builds its default class', () => {
    const fn = program.files[0].functions.find((f) => f.name === 'conv_norm')!;
    const call = opsOf(fn.body).find((o) => o.callee === 'norm_layer');
    expect(call).toMatchObject({ kind: 'unknown', type: ['torch.nn.BatchNorm2d'] });
  });

  it('a rewrite relying on the default checks the class built at run time; Sequentials check per pair', () => {
    const run = runRewrite([cnn]);
    const at = (line: number) => run.sites.find((s) => s.lines[0] === line)!;
    expect(at(48)).toMatchObject({ rule: 'conv_bn', decision: 'rewritten' });
    expect(at(48).guards).toContain('_adopt.built_as(self.bn, "torch.nn.BatchNorm2d")');
    expect(at(94).guards).toContain('_adopt.built_as(self.act, "torch.nn.GELU")');
    // FusedSequential judges each Conv→BN pair itself
    expect(at(119).guards.join(' ')).not.toMatch(/built_as/);
    // a module whose class is written out is not checked
    const plain = runRewrite([join(modelsDir, 'resnet_style.py')]);
    expect(plain.sites.some((s) => s.guards.some((g) => g.includes('built_as')))).toBe(false);
    // GroupNorm and SiLU defaults are not sites
    expect(run.sites.map((s) => `${s.rule}@${s.lines[0]}`).sort()).toEqual(['conv_bn@119', 'conv_bn@124', 'conv_bn@146', 'conv_bn@34', 'conv_bn@48', 'conv_bn@68', 'conv_bn@69', 'conv_bn@70', 'linear_gelu@94'].sort());
  });
});

describe('LM head with its loss through a helper', () => {
  it('a property is not inlined as a call: self.loss_function(...) stays the call it is', () => {
    const { program } = analyzePaths([lm]);
    const ops = opsOf(methodOf(moduleOf(program, 'TinyForCausalLM')).body);
    const loss = ops.find((o) => o.callee === 'self.loss_function');
    expect(loss).toMatchObject({ kind: 'unknown' });
    expect(ops.some((o) => o.via?.some((v) => v.endsWith('loss_function')))).toBe(false);
  });

  it('the keyword form is rewritten under a run-time check of the helper; scaled and soft-capped forms are listed with the reason in words', () => {
    const run = runRewrite([lm]);
    const sites = run.sites.filter((s) => s.rule === 'lm_head_ce');
    expect(sites.map((s) => s.owner)).toEqual(['TinyForCausalLM', 'TinyScaledForCausalLM', 'TinySoftcappedForCausalLM']);
    const [plain, ...changed] = sites;
    expect(plain.decision, plain.reason).toBe('rewritten');
    expect(run.files[0].rewritten).toContain('(_adopt_lm_loss := _adopt.causal_lm_loss(self.loss_function, self.lm_head, self.config.vocab_size, kwargs)) is not None');
    for (const s of changed) {
      expect(s.decision).toBe('skipped');
      expect(s.reason).toMatch(/before self\.loss_function \(scaling or soft-capping\)|on one path before the loss \(scaling or soft-capping under a condition\)/);
    }
  });

  it('detect is for rules without a rewrite', () => {
    const base = 'rule d\n  match\n    y = softmax($x, ...)\n';
    const [r] = parseRules(`${base}  detect "why not"\n`, 'd.rule');
    expect(r.detect).toBe('why not');
    const both = `${base}  rewrite expr y\n    "torch.softmax({x}, -1)"\n  detect "why not"\n`;
    expect(() => parseRules(both, 'd.rule')).toThrow(RuleError);
    expect(() => parseRules(both, 'd.rule')).toThrow(/both a rewrite and 'detect'/);
  });
});

describe('a layer class kept on self', () => {
  it('`self._norm_layer = norm_layer` then `nn.Sequential(conv1x1(...), norm_layer(...))` in a method', () => {
    const dir = tempProject({
      'net.py': `from torch import nn


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class Stage(nn.Module):
    def __init__(self, cin=8, cout=16, norm_layer=None):
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self._norm_layer = norm_layer
        self.downsample = self._make_downsample(cin, cout)

    def _make_downsample(self, cin, cout):
        norm_layer = self._norm_layer
        return nn.Sequential(conv1x1(cin, cout, 2), norm_layer(cout))

    def forward(self, x):
        return self.downsample(x)
`,
    });
    const run = runRewrite([join(dir, 'net.py')]);
    expect(run.sites.map((s) => [s.rule, s.lines[0], s.decision])).toEqual([['conv_bn', 18, 'rewritten']]);
  });
});

describe('a layer class chosen by a flag', () => {
  it('`partial(nn.Conv2d, kernel_size=1) if use_conv else nn.Linear` builds the class the flag\'s default picks', () => {
    const dir = tempProject({
      'mlp.py': `from functools import partial

from torch import nn


class Mlp(nn.Module):
    def __init__(self, dim=8, hidden=16, act_layer=nn.GELU, use_conv=False):
        super().__init__()
        linear_layer = partial(nn.Conv2d, kernel_size=1) if use_conv else nn.Linear
        self.fc1 = linear_layer(dim, hidden)
        self.act = act_layer()
        self.fc2 = linear_layer(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))
`,
    });
    const run = runRewrite([join(dir, 'mlp.py')]);
    expect(run.sites.map((s) => [s.rule, s.decision])).toEqual([['linear_gelu', 'rewritten']]);
    expect(run.sites[0].guards).toContain('_adopt.built_as(self.fc1, "torch.nn.Linear")');
  });
});
