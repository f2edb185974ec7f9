// The rule-writing commands as a user runs them: --rules combined with the library, rules
// check/test/show, --help texts, and --why-not ranked by how much of a pattern matched.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adopt, looksLikeCrash, repoRoot } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

const model = `import torch
from torch import nn


class Head(nn.Module):
    def forward(self, x):
        return torch.softmax(x * 2, dim=-1)
`;
const mine = 'rule my_softmax\n  priority 45\n  match\n    y = softmax($x, ...)\n  where\n    last_dim(y)\n  rewrite expr y\n    guard "_adopt is not None and _adopt.enabled(\'softmax\')"\n    "_adopt.softmax({x}, dim=-1)"\n';

describe('--rules with the library', () => {
  it('a library name and a file, repeated --rules, and --no-builtin-rules', () => {
    const other = mine.replace('"_adopt.softmax({x}, dim=-1)"', '"torch.exp(torch.log_softmax({x}, -1))"');
    const dir = tempProject({ 'm.py': model, 'my.rule': other });
    const rulesOf = (args: string[]) => {
      const r = adopt(['rewrite', '--json', ...args, join(dir, 'm.py')]);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout).sites.map((s: { rule: string; decision: string }) => `${s.rule}:${s.decision}`).sort();
    };
    expect(rulesOf(['--rules', `softmax,${join(dir, 'my.rule')}`])).toEqual(['my_softmax:rewritten', 'softmax:skipped']);
    expect(rulesOf(['--rules', 'softmax', '--rules', join(dir, 'my.rule')])).toEqual(['my_softmax:rewritten', 'softmax:skipped']);
    expect(rulesOf(['--rules', join(dir, 'my.rule'), '--no-builtin-rules'])).toEqual(['my_softmax:rewritten']);
    const unknown = adopt(['rewrite', '--rules', 'sofmax', join(dir, 'm.py')]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown rule 'sofmax'/);
  });
});

describe('adopt rules', () => {
  it('a library rule name stays a name where a folder of that name is in the current directory', () => {
    const dir = tempProject({ 'softmax/other.rule': mine.replace('my_softmax', 'other') });
    const r = adopt(['rules', 'list', '--rules', 'softmax'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n').map((l) => l.split(/\s+/)[0])).toEqual(['softmax']);
    expect(adopt(['rules', 'list', '--rules', './softmax', '--no-builtin-rules'], { cwd: dir }).stdout).toMatch(/^other\s/);
  });

  it('every subcommand has a description in --help', () => {
    const expected: Record<string, RegExp> = {
      list: /list the rules in use/, show: /print a rule's source/, test: /compare them with the expected output/, check: /check rule files without running them/,
    };
    for (const [cmd, want] of Object.entries(expected)) {
      const r = adopt(['rules', cmd, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(want);
    }
    expect(adopt(['rules', 'test', '--help']).stdout).toMatch(/--update/);
  });

  it('show without a name prints the reference generated from the registries', () => {
    const r = adopt(['rules', 'show']);
    expect(r.stdout).toMatch(/## Constraints[\s\S]*`halves\(line\\\|\$meta/);
    expect(r.stdout).toMatch(/## Kernels[\s\S]*`softmax\(x, dim, dtype\)`/);
  });

  it('check reports every broken file, missing example files and templates that are not Python, each at file:line', () => {
    const dir = tempProject({
      'rules/broken.rule': 'rule broken\n  titel "x"\n',
      'rules/also_broken.rule': 'rule also\n  match\n    y = softmax($x\n',
      'rules/missing.rule': `${mine.replace('my_softmax', 'missing')}  example "cases/before.py" "cases/after.py"\n`,
      'rules/template.rule': mine.replace('my_softmax', 'template').replace('"_adopt.softmax({x}, dim=-1)"', '"_adopt.softmax({x}, -1))("'),
      'rules/good/good.rule': `${mine}  example "before.py" "after.py"\n`,
      'rules/good/before.py': model, 'rules/good/after.py': model,
    });
    const r = adopt(['rules', 'check', join(dir, 'rules')]);
    expect(r.code).toBe(2);
    expect(looksLikeCrash(r.stderr)).toBe(false);
    expect(r.stderr).toMatch(/also_broken\.rule:3:\d+: error: cannot parse the rule: the line ends before its brackets are closed/);
    expect(r.stderr).toMatch(/broken\.rule:2:3: error: cannot parse the rule: 'titel' is not a rule item/);
    expect(r.stderr).toMatch(/missing\.rule:10:3: error: rule missing: example file cases\/before\.py does not exist \(paths are relative to the rule file's directory/);
    // at the template's own line, below `rewrite expr y` (7) and its guard (8)
    expect(r.stderr).toMatch(/template\.rule:9:5: error: rule template: the rewrite expression would not be Python/);
    expect(r.stdout).toMatch(/good\.rule:1: rule my_softmax: ok/);
  });

  it('test prints the diff when after.py differs, and --update writes the expected output', () => {
    const after = model.replace('torch.softmax(x * 2, dim=-1)', 'torch.softmax(x * 3, dim=-1)');
    // the expected output is stale: written for x * 3 when the model now says x * 2
    const dir = tempProject({ 'r/my.rule': `${mine}  example "before.py" "after.py" model "Head" shapes (2, 5)\n`, 'r/before.py': model, 'r/after.py': after });
    const first = adopt(['rules', 'test', '--rules', join(dir, 'r', 'my.rule'), '--no-builtin-rules']);
    expect(first.code).toBe(1);
    expect(first.stdout).toMatch(/differs from after\.py/);
    expect(first.stdout).toMatch(/\n\s+-\s+return torch\.softmax\(x \* 3, dim=-1\)\n/);
    expect(first.stdout).toMatch(/\n\s+\+.*_adopt\.softmax\(x \* 2, dim=-1\)/);
    // the hint names the rules the command ran with: run as printed, it finds the rule
    expect(first.stdout).toContain(`(adopt rules test --update --rules ${join(dir, 'r', 'my.rule')} --no-builtin-rules my_softmax accepts the new output)`);
    const update = adopt(['rules', 'test', 'my_softmax', '--update', '--rules', join(dir, 'r', 'my.rule'), '--no-builtin-rules']);
    expect(update.stdout).toMatch(/expected output written/);
    const written = readFileSync(join(dir, 'r', 'after.py'), 'utf8');
    expect(written).toMatch(/_adopt\.softmax\(x \* 2, dim=-1\)/);
    const again = adopt(['rules', 'test', '--rules', join(dir, 'r', 'my.rule'), '--no-builtin-rules']);
    expect(again.stdout, again.stdout).toMatch(/1 passed, 0 failed/);
    expect(again.code).toBe(0);
    expect(readdirSync(join(dir, 'r')).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  }, 120_000);

  it("test holds the rewrite to the example's atol and rtol", () => {
    const swish = 'import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(8, 8)\n\n    def forward(self, x):\n        h = self.fc(x)\n        return h * torch.sigmoid(h)\n';
    // off by 1e-4 of each value: inside the check's float32 tolerance (1e-3), outside a tight one
    const rule = (tol: string) => `rule near_silu\n  title "t"\n  match\n    s = sigmoid($x)\n    m = mul($x, s)\n  rewrite expr m\n    "torch.nn.functional.silu({x}) * 1.0001"\n  kernel cpu torch "torch.nn.functional.silu"\n  example "before.py" "after.py" model "M" shapes (4, 8) ${tol}\n`;
    const after = swish.replace('h * torch.sigmoid(h)', '(torch.nn.functional.silu(h) * 1.0001)');
    const run = (tol: string) => {
      const dir = tempProject({ 'r/near.rule': rule(tol), 'r/before.py': swish, 'r/after.py': after });
      return adopt(['rules', 'test', '--rules', join(dir, 'r'), '--no-builtin-rules']);
    };
    const tight = run('atol 1e-7 rtol 1e-7');
    expect(tight.code, tight.stdout).toBe(1);
    expect(tight.stdout).toMatch(/numerical check: max abs error .* is over the example's atol 1e-7, and the relative error .* over its rtol 1e-7/);
    const loose = run('atol 1e-2 rtol 1e-2');
    expect(loose.stdout, loose.stdout + loose.stderr).toMatch(/1 passed, 0 failed/);
    expect(loose.code).toBe(0);
  }, 120_000);

  it('check looks a torch kernel line up in torch, and names the nearest names it has', () => {
    const silu = (callee: string) => `rule my_silu\n  title "t"\n  match\n    s = sigmoid($x)\n    y = mul($x, s)\n  rewrite expr y\n    "torch.nn.functional.silu({x})"\n  kernel cpu torch "${callee}"\n  example "before.py" "before.py"\n`;
    const dir = tempProject({ 'bad/r.rule': silu('torch.nn.functional.sillu'), 'bad/before.py': model, 'good/r.rule': silu('torch.nn.functional.silu'), 'good/before.py': model });
    const bad = adopt(['rules', 'check', join(dir, 'bad')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/r\.rule:8:3: error: rule my_silu: kernel cpu torch "torch\.nn\.functional\.sillu": torch \S+ has no torch\.nn\.functional\.sillu \(did you mean torch\.nn\.functional\.silu/);
    const good = adopt(['rules', 'check', join(dir, 'good')]);
    expect(good.code, good.stderr).toBe(0);
  }, 60_000);

  it('check and --rules refuse a file too large, a line too long, nesting too deep or not UTF-8 at once, at its place', () => {
    const rule = (title: string, arg = 's') => `rule r\n  title "${title}"\n  match\n    s = sigmoid($x)\n    y = mul($x, ${arg})\n  rewrite expr y\n    "torch.nn.functional.silu({x})"\n`;
    const dir = tempProject({
      'big.rule': rule('a'.repeat(2_000_000)), 'long.rule': rule('a'.repeat(50_000)),
      'deep.rule': rule('t', `${'('.repeat(1500)}s${')'.repeat(1500)}`),
      'latin1.rule': Buffer.from(rule('caf\u00e9'), 'latin1'), 'm.py': model,
    });
    const cases: [string, RegExp][] = [
      ['big.rule', /big\.rule:1:1: error: the rule file is \d+ KiB, over the 256 KiB/],
      ['long.rule', /long\.rule:2:4001: error: line 2 is \d+ characters long/],
      ['deep.rule', /deep\.rule:5:\d+: error: brackets nested more than 64 deep/],
      ['latin1.rule', /latin1\.rule:2:13: error: the file is not UTF-8: byte 0xE9/],
    ];
    for (const [file, want] of cases) {
      for (const args of [['rules', 'check', join(dir, file)], ['rewrite', '--rules', join(dir, file), join(dir, 'm.py')]]) {
        const t = Date.now();
        const r = adopt(args);
        expect(Date.now() - t, file).toBeLessThan(10_000);
        expect(r.code, `${file} ${r.stderr}`).toBe(2);
        expect(looksLikeCrash(r.stderr)).toBe(false);
        expect(r.stderr).toMatch(want);
      }
    }
  }, 120_000);

  it('check refuses two files defining one rule name, as --rules would', () => {
    const dir = tempProject({ 'r/a.rule': `${mine}  example "before.py" "before.py"\n`, 'r/b.rule': `${mine}  example "before.py" "before.py"\n`, 'r/before.py': model });
    const r = adopt(['rules', 'check', join(dir, 'r')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/b\.rule:1:1: error: rule 'my_softmax' is also defined at .*a\.rule:1/);
  });
});

describe('--why-not', () => {
  const file = join(repoRoot, 'fixtures', 'why-not', 'tiny_llm.py');
  const missLines = (s: string) => s.split('\n').filter((l) => l.includes(': not a site: '));

  it('shows the close near misses, closest first, the missed RMSNorm among them, and counts the rest', () => {
    const r = adopt(['rewrite', '--why-not', file]);
    expect(r.code).toBe(0);
    const lines = missLines(r.stderr);
    expect(lines[0]).toMatch(/tiny_llm\.py:80:\d+: softmax: not a site: softmax over dim=1.*\(the whole pattern matched\)$/);
    expect(lines).toContainEqual(expect.stringMatching(/tiny_llm\.py:15:\d+: rmsnorm_fp32_scale: not a site: the code around it has no 'c = to\(\$x, dtype=torch\.float32\)' \(6 of 7 pattern lines matched\)/));
    expect(lines.some((l) => /BatchNorm1d|cross_entropy/.test(l))).toBe(false);
    const all = missLines(adopt(['rewrite', '--why-not=all', file]).stderr);
    expect(r.stderr).toMatch(new RegExp(`adopt: ${all.length - lines.length} more near miss\\(es\\) matched less of their pattern; --why-not=all shows them`));
    expect(all.some((l) => /no 'b = BatchNorm1d\(\.\.\.\)' follows/.test(l))).toBe(true);
    expect(all.slice(0, lines.length)).toEqual(lines);
  });

  it('--json lists the close near misses with how much of each pattern matched', () => {
    const j = JSON.parse(adopt(['rewrite', '--json', '--why-not', file]).stdout);
    expect(j.near_misses.map((n: { rule: string }) => n.rule)).toContain('rmsnorm');
    expect(j.near_misses.every((n: { matched: number; of: number }) => n.matched <= n.of)).toBe(true);
  });
});
