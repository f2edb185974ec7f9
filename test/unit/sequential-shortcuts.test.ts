// nn.Sequential pairs whose layers come from helper functions, Sequentials built into a local of
// __init__ before an attribute takes them or another module's constructor is handed them, and
// layer constructors in helpers, which build layers and compute nothing.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzePaths } from '../../src/analysis/analyze.js';
import { runRewrite } from '../../src/pipeline/index.js';
import { modelsDir } from '../helpers/fixtures.js';
import { methodOf, moduleOf, opsOf, tempProject } from '../helpers/ir.js';

const fixture = join(modelsDir, 'resnet_shortcuts.py');
const FUSED = "(_adopt.FusedSequential if _adopt is not None and _adopt.enabled('conv_bn') else nn.Sequential)";

describe('Sequential elements built by helper functions', () => {
  it('an element conv1x1(...) is the nn.Conv2d the helper returns', () => {
    const { program } = analyzePaths([fixture]);
    const branch = moduleOf(program, 'GroupedBlock').attrs.find((a) => a.name === 'branch')!;
    expect(branch.defaults).toEqual([
      ['resnet_shortcuts.conv1x1', { k: 'name', path: 'torch.nn.Conv2d' }],
      ['resnet_shortcuts.conv3x3', { k: 'name', path: 'torch.nn.Conv2d' }],
    ]);
    const chain = opsOf(methodOf(moduleOf(program, 'GroupedBlock')).body).filter((o) => o.callee.startsWith('self.branch['));
    expect(chain.map((o) => o.type?.[0])).toEqual(['torch.nn.Conv2d', 'torch.nn.BatchNorm2d', 'torch.nn.ReLU', 'torch.nn.Conv2d', 'torch.nn.BatchNorm2d']);
  });
});

describe('Sequentials built into a local of __init__', () => {
  const run = runRewrite([fixture], { rules: 'conv_bn' });
  const text = run.files[0].rewritten;
  const at = (line: number) => run.sites.filter((s) => s.lines[0] <= line && line <= s.lines[1]).map((s) => s.decision);

  it('an attribute that takes the local is rewritten where the local is built', () => {
    // the site is the local's statement alone: the attribute's own line is left as it is
    expect(at(64)).toEqual(['rewritten']);
    expect(at(65)).toEqual([]);
    expect(text).toContain(`proj = ${FUSED}(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))`);
    expect(text).toContain('        self.proj = proj\n');
  });

  it('a downsample handed to a block is rewritten where it is built', () => {
    expect(at(81)).toEqual(['rewritten']);
    expect(text).toContain(`downsample = ${FUSED}(conv1x1(w1, w2, stride=2), nn.BatchNorm2d(w2))`);
    expect(text).toContain('BasicBlock(w1, w2, stride=2, downsample=downsample)');
  });

  it('every pair is a site of its own, and each Sequential one edit', () => {
    expect(run.sites.map((s) => `${s.lines[0]}-${s.lines[1]} ${s.decision}`)).toEqual(['42-43 rewritten', '45-46 rewritten', '57-63 rewritten', '57-63 rewritten', '64-64 rewritten', '76-80 rewritten', '81-81 rewritten']);
    expect(text.split('\n').filter((l) => l.includes('FusedSequential'))).toHaveLength(4);
  });

  const model = (body: string) => tempProject({
    'm.py': `import torch.nn as nn


class Stem(nn.Module):
    def __init__(self, c=8):
        super().__init__()
${body}

    def forward(self, x):
        return self.body(x)
`,
  });

  it('a local read again elsewhere is not rewritten, and the reason names where', () => {
    const dir = model(`        ds = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))
        self.body = ds
        self.spare = [ds]`);
    const out = runRewrite([join(dir, 'm.py')], { rules: 'conv_bn' });
    expect(out.sites.map((s) => [s.lines[0], s.decision])).toEqual([[8, 'skipped']]);
    expect(out.sites[0].reason).toBe('the nn.Sequential is built into ds at line 7, and ds is also used at line 9: rewriting it there would change it for that use too, which the analysis did not follow');
  });

  it('a local rebound after the attribute takes it is still that attribute\'s alone', () => {
    const dir = model(`        ds = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))
        self.body = ds
        ds = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.tail = ds`);
    const out = runRewrite([join(dir, 'm.py')], { rules: 'conv_bn' });
    expect(out.sites.map((s) => [s.lines[0], s.decision])).toEqual([[7, 'rewritten'], [9, 'rewritten']]);
    expect(out.files[0].rewritten.split('\n').filter((l) => l.includes('FusedSequential'))).toHaveLength(2);
  });

  it('a local built under a condition the attribute does not share is not placed there', () => {
    const dir = model(`        ds = nn.Identity()
        if c > 4:
            ds = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))
        self.body = ds`);
    const out = runRewrite([join(dir, 'm.py')], { rules: 'conv_bn' });
    expect(out.sites.map((s) => [s.lines[0], s.decision, s.reason])).toEqual([[10, 'skipped', 'the nn.Sequential call is not in this statement']]);
  });
});

describe('layer constructors in helpers', () => {
  it('build layers and are no near miss of the rules for the layers called', () => {
    const dir = tempProject({
      'm.py': `import torch.nn as nn


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def scores_act():
    return nn.Softmax(-1)


class Net(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.proj = conv1x1(c, c)
        self.act = scores_act()

    def _make(self, c):
        layers = [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        return nn.Sequential(*layers)

    def forward(self, x):
        return self.act(self.proj(x))
`,
    });
    const out = runRewrite([join(dir, 'm.py')], { rules: 'conv_bn,softmax' });
    // the constructors at lines 5, 9 and 19
    expect(out.nearMisses.filter((n) => [5, 9, 19].includes(n.line))).toEqual([]);
    // the Sequential of _make and the softmax the module computes in forward are still sites
    expect(out.sites.map((s) => `${s.rule} ${s.lines[0]} ${s.decision}`).sort()).toEqual(['conv_bn 20 rewritten', 'softmax 23 rewritten']);
  });
});
