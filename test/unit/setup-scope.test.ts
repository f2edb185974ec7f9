// Where rules look for sites. The rules for a model's computations read the code a model runs;
// a rule with `scope setup` also reads the code that builds a model and its training: an
// nn.Module's __init__, the methods of classes that are not modules, functions defined inside
// functions. fused_optimizer does, since training code builds its optimizers there.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzePaths } from '../../src/analysis/analyze.js';
import { setupCode } from '../../src/analysis/setup.js';
import { loadRules, looksIn, parseRules, RuleError } from '../../src/match/rule.js';
import { runRewrite } from '../../src/pipeline/index.js';
import { repoRoot } from '../helpers/cli.js';
import { tempProject } from '../helpers/ir.js';

const TRAIN = `import torch
import torch.nn.functional as F
from torch import nn


class Trainer:
    def __init__(self, model, lr=1e-3):
        self.model = model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr)

    def configure(self):
        return torch.optim.Adam(self.model.parameters(), lr=1e-3)

    @staticmethod
    def build(params):
        return torch.optim.Adam(params)

    @classmethod
    def resume(cls, model):
        trainer = cls(model)
        trainer.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        return trainer

    def fit(self, batch):
        probs = F.softmax(self.model(batch), dim=-1)
        return probs


def make(model):
    return torch.optim.AdamW(model.parameters(), lr=1e-3)


def sweep(lr):
    def build(params):
        return torch.optim.AdamW(params, lr=lr)

    return build


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.GELU()
        self.register_buffer("w", torch.softmax(torch.ones(4), dim=-1))
        self.opt = torch.optim.AdamW(self.parameters())
        if torch.cuda.is_available():
            self.opt2 = torch.optim.Adam(self.parameters(), fused=True)

    def forward(self, x):
        return self.fc(x)
`;

const GUARD = "_adopt is not None and _adopt.enabled('fused_optimizer')";
const rewritten = (call: string, cls: string) => `(_adopt.fused_optimizer_class(${cls}) if ${GUARD} else ${cls})${call.slice(cls.length)}`;

function rewrite(files: Record<string, string>, rules?: string) {
  const dir = tempProject(files);
  const run = runRewrite([join(dir, 'train.py')], { whyNot: true, ...(rules ? { rules: join(dir, rules) } : {}) });
  expect(run.files[0].error).toBeUndefined();
  return { text: run.files[0].rewritten, sites: run.sites, nearMisses: run.nearMisses };
}

describe('fused_optimizer looks in setup code', () => {
  it('finds and rewrites optimizers built in a trainer, its static and class methods, a nested factory and an nn.Module __init__', () => {
    const { text, sites } = rewrite({ 'train.py': TRAIN });
    const opt = sites.filter((s) => s.rule === 'fused_optimizer');
    expect(opt.map((s) => [s.owner, s.method, s.lines[0], s.decision])).toEqual([
      ['Trainer', '__init__', 9, 'rewritten'],
      ['Trainer', 'configure', 12, 'rewritten'],
      ['Trainer', 'build', 16, 'rewritten'],
      ['Trainer', 'resume', 21, 'rewritten'],
      ['', 'make', 30, 'rewritten'],
      ['', 'sweep.<locals>.build', 35, 'rewritten'],
      ['Net', '__init__', 46, 'rewritten'],
    ]);
    // the same guarded expression as in a function, and nothing else of the line changes
    for (const [call, cls] of [
      ['torch.optim.AdamW(model.parameters(), lr=lr)', 'torch.optim.AdamW'],
      ['torch.optim.Adam(self.model.parameters(), lr=1e-3)', 'torch.optim.Adam'],
      ['torch.optim.Adam(params)', 'torch.optim.Adam'],
      ['torch.optim.AdamW(model.parameters(), lr=1e-4)', 'torch.optim.AdamW'],
      ['torch.optim.AdamW(params, lr=lr)', 'torch.optim.AdamW'],
      ['torch.optim.AdamW(self.parameters())', 'torch.optim.AdamW'],
    ]) expect(text).toContain(rewritten(call, cls));
    expect(text).toContain(`        self.optimizer = ${rewritten('torch.optim.AdamW(model.parameters(), lr=lr)', 'torch.optim.AdamW')}\n`);
    expect(text).toContain(`        self.opt = ${rewritten('torch.optim.AdamW(self.parameters())', 'torch.optim.AdamW')}\n`);
  });

  it('an optimizer in __init__ that already chooses its implementation is a near miss there', () => {
    const { nearMisses } = rewrite({ 'train.py': TRAIN });
    expect(nearMisses).toContainEqual(expect.objectContaining({ rule: 'fused_optimizer', line: 48, owner: 'Net', reason: expect.stringMatching(/already passes fused=/) }));
  });

  it('one site where __init__ calls the method that builds the optimizer', () => {
    const { sites } = rewrite({ 'train.py': `import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.optimizer = self.configure_optimizers()

    def configure_optimizers(self):
        return torch.optim.AdamW(self.fc.parameters(), lr=1e-3)

    def forward(self, x):
        return self.fc(x)
` });
    expect(sites.map((s) => [s.rule, s.owner, s.method, s.lines[0]])).toEqual([['fused_optimizer', 'Net', 'configure_optimizers', 12]]);
  });
});

describe('the rules for a model\'s computations do not look in setup code', () => {
  it('a softmax computed in __init__ or in a trainer method is no site, the forward\'s is', () => {
    const forward = TRAIN.replace('        return self.fc(x)\n', '        return torch.softmax(self.fc(x), dim=-1)\n');
    const { sites } = rewrite({ 'train.py': forward });
    expect(sites.filter((s) => s.rule !== 'fused_optimizer').map((s) => [s.rule, s.owner, s.method])).toEqual([['softmax', 'Net', 'forward']]);
  });

  it('a rule of the same pattern looks in setup code only when it says so', () => {
    const rule = (scope: string) => `rule setup_softmax
  title "softmax"
${scope}  match
    y = softmax($x, dim=-1)
  rewrite expr y
    guard "_adopt is not None and _adopt.enabled('softmax')"
    "_adopt.softmax({x}, dim=-1)"
  kernel cpu native "adopt_kernels.softmax"
  example "before.py" "after.py"
`;
    const places = (scope: string) => rewrite({ 'train.py': TRAIN, 'r.rule': rule(scope) }, 'r.rule').sites
      .filter((s) => s.rule === 'setup_softmax').map((s) => [s.owner, s.method]);
    expect(places('')).toEqual([]);
    expect(places('  scope model\n')).toEqual([]);
    expect(places('  scope setup\n')).toEqual([['Trainer', 'fit'], ['Net', '__init__']]);
  });
});

describe('the scope item', () => {
  const head = 'rule r\n  title "t"\n';
  const body = '  match\n    y = softmax($x, dim=-1)\n  detect "only listed"\n  example "b.py" "a.py"\n';

  it('reads a list of scopes; without it a rule reads model code only', () => {
    const [plain] = parseRules(head + body, 'f.rule');
    expect(plain.scope).toBeUndefined();
    expect([looksIn(plain, 'model'), looksIn(plain, 'setup')]).toEqual([true, false]);
    const [both] = parseRules(`${head}  scope model, setup\n${body}`, 'f.rule');
    expect(both.scope).toEqual(['model', 'setup']);
    const [setup] = parseRules(`${head}  scope setup\n${body}`, 'f.rule');
    expect([looksIn(setup, 'model'), looksIn(setup, 'setup')]).toEqual([false, true]);
  });

  it('refuses a scope it does not know, at its place', () => {
    expect(() => parseRules(`${head}  scope init\n${body}`, 'f.rule')).toThrow(RuleError);
    expect(() => parseRules(`${head}  scope init\n${body}`, 'f.rule')).toThrow(/^f\.rule:3:9: error: cannot parse the rule/);
  });

  it('the library: fused_optimizer reads model and setup code, every other rule model code only', () => {
    const rules = loadRules();
    expect(rules.filter((r) => looksIn(r, 'setup')).map((r) => r.name)).toEqual(['fused_optimizer']);
    expect(rules.every((r) => looksIn(r, 'model'))).toBe(true);
  });
});

describe('setup code is lowered on request', () => {
  it('only for a file whose text spells a name the request gives', () => {
    const dir = tempProject({ 'train.py': TRAIN });
    const { program } = analyzePaths([join(dir, 'train.py')]);
    const [file] = program.files;
    expect(setupCode(file, ['RMSprop'])).toEqual([]);
    const units = setupCode(file, ['Adam']);
    expect(units.map((u) => [u.owner ?? u.module?.name ?? '', u.method.name])).toEqual([
      ['Trainer', '__init__'], ['Trainer', 'configure'], ['Trainer', 'build'], ['Trainer', 'resume'], ['Trainer', 'fit'],
      ['', 'sweep.<locals>.build'],
      ['Net', '__init__'],
    ]);
    expect(units.find((u) => u.method.name === 'sweep.<locals>.build')?.qual).toBe(`${file.module}.sweep.<locals>.build`);
    // what explain prints stays the code a model runs
    expect(file.modules.flatMap((m) => m.methods.map((x) => x.name))).toEqual(['forward']);
  });

  it('the library rule example still rewrites as its after.py says', () => {
    const dir = join(repoRoot, 'rules', 'fused_optimizer');
    const run = runRewrite([join(dir, 'before.py')], { rules: 'fused_optimizer' });
    expect(run.sites.map((s) => [s.owner, s.method])).toEqual([['Trainable', 'configure_optimizers']]);
  });
});
