// Layer factories run over their arguments' default classes, and lists of layers built up in
// __init__ before they become a Sequential.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzePaths } from '../../src/analysis/analyze.js';
import { runRewrite } from '../../src/pipeline/index.js';
import { modelsDir } from '../helpers/fixtures.js';
import { methodOf, moduleOf, opsOf } from '../helpers/ir.js';

const factories = join(modelsDir, 'norm_act_factory.py');
const lists = join(modelsDir, 'layer_lists.py');

describe('layer factories', () => {
  const { program } = analyzePaths([factories]);
  const typeOf = (cls: string, callee: string) => opsOf(methodOf(moduleOf(program, cls)).body).find((o) => o.callee === callee)?.type;
  const attr = (cls: string, name: string) => moduleOf(program, cls).attrs.find((a) => a.name === name)!;

  it('a factory mapping a norm class by its name gives the norm+act class of the default', () => {
    expect(attr('DepthwiseSeparable', 'bn1').defaults).toEqual([['norm_act_layer', { k: 'name', path: 'norm_act_factory.BatchNormAct2d' }]]);
    expect(typeOf('DepthwiseSeparable', 'self.bn1')).toEqual(['norm_act_factory.BatchNormAct2d']);
    // the same factory called with class names, not parameters
    expect(typeOf('MobileStem', 'self.bn_stem')).toEqual(['norm_act_factory.BatchNormAct2d']);
    // GroupNorm maps to GroupNormAct: no batch norm to fold
    expect(typeOf('GroupNormBlock', 'self.bn')).toEqual(['norm_act_factory.GroupNormAct']);
  });

  it('a factory building one of several convolutions gives the plain torch one, as a default the rewrite checks', () => {
    expect(attr('DepthwiseSeparable', 'conv_dw').defaults).toEqual([['norm_act_factory.build_conv', { k: 'name', path: 'torch.nn.Conv2d' }]]);
    expect(typeOf('DepthwiseSeparable', 'self.conv_dw')).toEqual(['torch.nn.Conv2d']);
  });

  it('the rewrite checks both classes built at run time', () => {
    const out = runRewrite([factories], { rules: 'conv_bn_act' });
    const sites = out.sites.filter((s) => s.rule === 'conv_bn_act');
    expect(sites.map((s) => [s.lines, s.decision])).toEqual([[[103, 104], 'rewritten'], [[105, 106], 'rewritten'], [[135, 136], 'rewritten']]);
    const text = out.files[0].rewritten;
    expect(text).toContain('_adopt.built_as(self.conv_dw, "torch.nn.Conv2d")');
    expect(text).toContain('_adopt.built_as(self.bn1, BatchNormAct2d)');
    expect(text).toContain('x = _adopt.conv_bn_act(x, self.conv_dw, self.bn1)');
  });
});

describe('lists of layers built before their Sequential', () => {
  const { program } = analyzePaths([lists]);

  it('append, extend and += add to the list the Sequential is built from', () => {
    const stem = opsOf(methodOf(moduleOf(program, 'ListNet')).body).filter((o) => o.callee.startsWith('self.features['));
    expect(stem.map((o) => o.type?.[0])).toEqual(['torch.nn.Conv2d', 'torch.nn.BatchNorm2d', 'torch.nn.ReLU', 'layer_lists.InvertedBlock', 'torch.nn.Conv2d', 'torch.nn.BatchNorm2d', 'torch.nn.ReLU']);
    const block = moduleOf(program, 'InvertedBlock').attrs.find((a) => a.name === 'conv')!;
    expect(block.built?.from.line).toBe(16);
    expect(block.built?.to.line).toBe(29);
  });

  it('a pair in the list is placed at the list and rewritten where the Sequential is built', () => {
    const out = runRewrite([lists], { rules: 'conv_bn' });
    expect([...new Set(out.sites.map((s) => `${s.lines[0]}-${s.lines[1]} ${s.decision}`))]).toEqual(['16-29 rewritten', '40-46 rewritten']);
    const text = out.files[0].rewritten;
    expect(text).toContain("self.features = (_adopt.FusedSequential if _adopt is not None and _adopt.enabled('conv_bn') else nn.Sequential)(*layers)");
    expect(text).toContain("self.conv = (_adopt.FusedSequential if _adopt is not None and _adopt.enabled('conv_bn') else nn.Sequential)(*layers)");
  });
});
