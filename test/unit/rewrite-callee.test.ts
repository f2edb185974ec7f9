// `rewrite callee NAME`: the template replaces only the function a matched call calls, so a rewrite
// that changes a class (torch.optim.AdamW -> adopt's fused one) writes the call's arguments once,
// as they were, instead of the whole call twice (the fast path and the original).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseRules, RuleError } from '../../src/match/rule.js';
import { runRewrite } from '../../src/pipeline/index.js';
import { tempProject } from '../helpers/ir.js';

const GUARD = "_adopt is not None and _adopt.enabled('fused_optimizer')";
const fused = (cls: string) => `(_adopt.fused_optimizer_class(${cls}) if ${GUARD} else ${cls})`;

const TRAIN = `import torch
from torch import nn
from torch.optim import Adam


class Trainer:
    def __init__(self, model, lr=1e-3):
        self.model = model
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.05)

    def head(self):
        return Adam(
            self.model[-1].parameters(),
            lr=1e-4,
        )
`;

function rewrite(files: Record<string, string>, rules?: string) {
  const dir = tempProject(files);
  const opts = rules ? { rules: join(dir, rules), builtinRules: false } : { rules: 'fused_optimizer' };
  const run = runRewrite([join(dir, 'train.py')], opts);
  expect(run.files[0].error).toBeUndefined();
  return { dir, run, text: run.files[0].rewritten };
}

describe('rewrite callee', () => {
  it('replaces only the class of an optimizer construction, leaving its arguments as written, once', () => {
    const { text, run } = rewrite({ 'train.py': TRAIN });
    expect(run.sites.map((s) => [s.method, s.decision])).toEqual([['__init__', 'rewritten'], ['head', 'rewritten']]);
    expect(text).toContain(`        self.opt = ${fused('torch.optim.AdamW')}(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.05)\n`);
    // a call over several lines keeps its layout: only the function before '(' changes
    expect(text).toContain(`        return ${fused('Adam')}(\n            self.model[-1].parameters(),\n            lr=1e-4,\n        )\n`);
    expect(text.match(/model\.parameters\(\)/g)).toHaveLength(1);
    expect(text).toContain('import adopt_kernels as _adopt');
  });

  it('is idempotent: the rewritten file has nothing left to rewrite', () => {
    const { text } = rewrite({ 'train.py': TRAIN });
    // the form a second run must recognise as rewritten: the call's function is the guarded one
    expect(text).toContain(`${fused('torch.optim.AdamW')}(model.parameters()`);
    const again = tempProject({ 'train.py': text });
    const run = runRewrite([join(again, 'train.py')], { rules: 'fused_optimizer' });
    expect(run.files.filter((f) => f.rewritten !== f.original)).toEqual([]);
    expect(run.sites.filter((s) => s.decision === 'rewritten')).toEqual([]);
  });

  it('without a guard, groups the template as the function of a call requires', () => {
    const rule = `rule pick_optimizer
  title "AdamW or a fallback"
  scope setup
  match
    o = AdamW(...)
  rewrite callee o
    "{o.source_callee} or torch.optim.Adam"
`;
    const { text } = rewrite({ 'train.py': TRAIN, 'r.rule': rule }, 'r.rule');
    expect(text).toContain('        self.opt = (torch.optim.AdamW or torch.optim.Adam)(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.05)\n');
  });

  const probe = (guard: string) => `rule sm_callee
  title "softmax through another function"
  match
    y = softmax($x, dim=-1)
  rewrite callee y
    guard "${guard}"
    "torch.special.softmax"
`;
  const MODEL = `import torch
from torch import nn


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, h):
        a = torch.softmax(h, dim=-1)
        b = torch.softmax(self.fc(h), dim=-1)
        return a + b
`;

  it('reads values by name where the function runs, and refuses one computed inside the call\'s arguments', () => {
    const { run, text } = rewrite({ 'train.py': MODEL, 'r.rule': probe('{x}.dim() == 2') }, 'r.rule');
    expect(text).toContain('        a = (torch.special.softmax if h.dim() == 2 else torch.softmax)(h, dim=-1)\n');
    // self.fc(h) would run in the guard and again as the argument
    expect(text).toContain('        b = torch.softmax(self.fc(h), dim=-1)\n');
    const b = run.sites.find((s) => s.lines[0] === 12)!;
    expect([b.decision, b.reason]).toEqual(['skipped', expect.stringMatching(/cannot write \{x\}/)]);
  });

  it('refuses an op the analysis derived from a larger call, whose function is not the op\'s', () => {
    const rule = `rule t_callee
  title "a transpose"
  match
    t = transpose($k, -2, -1)
  rewrite callee t
    guard "True"
    "torch.swapaxes"
`;
    const model = `import torch
from torch import nn


class Scores(nn.Module):
    def forward(self, q, k):
        return torch.einsum("bhqd,bhkd->bhqk", q, k)
`;
    const { run, text } = rewrite({ 'train.py': model, 'r.rule': rule }, 'r.rule');
    expect(text).toBe(model);
    expect(run.sites.map((s) => [s.decision, s.reason])).toEqual([['skipped', expect.stringMatching(/computes more than the matched transpose/)]]);
  });
});

describe('rewrite callee: rule errors', () => {
  const base = (target: string, line = 'y = add($a, $b)') => `rule r
  title "t"
  match
    ${line}
  rewrite callee ${target}
    "torch.add"
`;

  it('refuses a line that may be an operator, at the target on the rewrite line', () => {
    expect(() => parseRules(base('y'), 'r.rule')).toThrow(RuleError);
    expect(() => parseRules(base('y'), 'r.rule')).toThrow(/^r\.rule:5:18: error: rewrite callee names 'y', but pattern line 'y' \(line 4\) matches 'add', which code also writes without a call .*use 'rewrite expr y'/);
    // an 'or' form counts as well
    expect(() => parseRules(base('y', 'y = softmax($a, dim=-1) or getitem($a, 0)'), 'r.rule')).toThrow(/^r\.rule:5:18: error: .*matches 'getitem'/);
  });

  it('refuses a metavariable or an unknown name as the target', () => {
    expect(() => parseRules(base('a', 'y = softmax($a, dim=-1)'), 'r.rule')).toThrow(/^r\.rule:5:18: error: rewrite callee names 'a', which is a metavariable \(\$a\), not a pattern line/);
    expect(() => parseRules(base('z', 'y = softmax($a, dim=-1)'), 'r.rule')).toThrow(/^r\.rule:5:18: error: rewrite callee names 'z', which is not a pattern name/);
  });

  it('refuses a template reading the value of the call whose function it replaces', () => {
    const rule = `rule r
  title "t"
  match
    y = softmax($a, dim=-1)
  rewrite callee y
    guard "{y} is not None"
    "torch.special.softmax"
`;
    expect(() => parseRules(rule, 'r.rule')).toThrow(/\{y\} reads the value of 'y', the call whose function 'rewrite callee y' replaces/);
  });

  it('parses a call line, with the target\'s column kept', () => {
    const [r] = parseRules(base('y', 'y = softmax($a, dim=-1)'), 'r.rule');
    expect(r.rewrite).toMatchObject({ kind: 'callee', target: 'y', targetCol: 18, code: ['torch.add'] });
  });
});
