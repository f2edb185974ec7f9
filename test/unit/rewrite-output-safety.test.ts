// What a rewrite writes must be Python as python3 reads it: a tab-indented file keeps its tabs
// (and the check after the rewrite sees mixed tabs and spaces, as python3's TabError does), no
// name of the analysis's own (`self.bns[%5]`) reaches the code, and a site whose rewrite does not
// parse is dropped with its reason while the file's other sites are written.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/cli/rewrite.js';
import { parsePython } from '../../src/parse/python.js';
import { sourceFromText } from '../../src/parse/source.js';
import { applyEdits, irValueIn, unparsableSites, type Edit } from '../../src/synth/edits.js';
import { fileIndentUnit, type SynthFile } from '../../src/synth/source.js';
import { tempProject } from '../helpers/ir.js';

function synthFile(text: string): SynthFile {
  const parsed = parsePython(sourceFromText('m.py', text));
  expect(parsed.diagnostics).toEqual([]);
  return { path: 'm.py', source: parsed.source, root: parsed.root, hadErrors: false, newline: '\n', bom: false, lineLength: 88 };
}

/** Whether python3 would accept the text (tree-sitter's errors and the Python-3 checks). */
const parses = (text: string) => parsePython(sourceFromText('out.py', text)).diagnostics.filter((d) => d.severity === 'error');

const TABBED = [
  'import torch',
  'from torch import nn',
  '',
  '',
  'class Tabs(nn.Module):',
  '\tdef __init__(self, dim: int = 16):',
  '\t\tsuper().__init__()',
  '\t\tself.fc = nn.Linear(dim, 32)',
  '\t\tself.act = nn.GELU()',
  '',
  '\tdef forward(self, x):',
  '\t\ty = self.act(self.fc(x))',
  '\t\treturn y',
  '',
].join('\n');

describe('a tab-indented file', () => {
  it('is rewritten with tabs: the guarded branches nest one tab deeper, and python3 reads it', () => {
    const dir = tempProject({ 'm.py': TABBED });
    const run = runRewrite([join(dir, 'm.py')], {});
    const f = run.files[0];
    expect(f.error).toBeUndefined();
    expect(run.sites.map((s) => s.decision)).toEqual(['rewritten']);
    expect(f.rewritten).toContain('\t\telse:\n\t\t\ty = self.act(self.fc(x))\n');
    expect(f.rewritten).toMatch(/\n\t\t\ty = _adopt\.linear_gelu\(/);
    // no line of the method is indented with spaces
    expect(f.rewritten.split('\n').filter((l) => /^\t+ +\S/.test(l) || /^ +\t/.test(l))).toEqual([]);
    expect(parses(f.rewritten)).toEqual([]);
  });

  it('knows its indentation unit', () => {
    expect(fileIndentUnit(TABBED)).toBe('\t');
    expect(fileIndentUnit('def f():\n    return 1\n')).toBe('    ');
  });

  it('refuses a rewrite that mixes tabs and spaces as python3 would (TabError), which tree-sitter accepts', () => {
    const f = synthFile(TABBED);
    const from = TABBED.indexOf('\t\ty = self.act');
    const line = '\t\ty = self.act(self.fc(x))';
    // the else branch indented with spaces before the tabs: 16 columns at tab size 8, as the
    // `if` header: python3 refuses it, the tree-sitter parse does not
    const text = `\t\tif fast:\n\t\t\ty = x\n\t\telse:\n    ${line}`;
    const edit: Edit = { start: from, end: from + line.length, text, rule: 'test', line: 12 };
    const out = applyEdits(f, [edit]);
    expect(out.error).toMatch(/would not parse .*inconsistent use of tabs and spaces/);
    expect(out.rewritten).toBe(TABBED);
  });
});

const CONV_BN = `import torch
from torch import nn


class ConvBNList(nn.Module):
    def __init__(self, c: int = 4, n: int = 3):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1) for _ in range(n)])
        self.bns = nn.ModuleList([nn.BatchNorm2d(c) for _ in range(n)])

    def forward(self, x):
        for i, conv in enumerate(self.convs):
            x = self.bns[len(self.bns) - 1 - i](conv(x))
        return x


class ConvBN(nn.Module):
    def __init__(self, c: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.bn(self.conv(x))
`;

describe('names of the analysis never reach the code', () => {
  it('writes a submodule looked up with a computed index as the source writes it', () => {
    const dir = tempProject({ 'm.py': CONV_BN });
    const run = runRewrite([join(dir, 'm.py')], {});
    const f = run.files[0];
    expect(f.error).toBeUndefined();
    expect(run.sites.map((s) => s.decision)).toEqual(['rewritten', 'rewritten']);
    expect(f.rewritten).toContain('x = _adopt.conv_bn(x, conv, self.bns[len(self.bns) - 1 - i])');
    expect(f.rewritten).not.toMatch(/%\d/);
    expect(parses(f.rewritten)).toEqual([]);
  });

  it('finds an IR value in code, but not the modulo operator or a string', () => {
    expect(irValueIn('_adopt.conv_bn(x, conv, self.bns[%5])')).toBe('%5');
    expect(irValueIn('f(%12, y)')).toBe('%12');
    expect(irValueIn('return %3')).toBe('%3');
    expect(irValueIn('y = x %5 + i % 2')).toBeUndefined();
    expect(irValueIn("y = '%d' %5")).toBeUndefined();
    expect(irValueIn('y = f("[%5]")  # [%5]')).toBeUndefined();
  });
});

describe('a site whose rewrite does not parse', () => {
  // `{y.dim}` stands in as a name when the rule is loaded (`f(_v, _v=0)` is Python), and is
  // filled with `-1`: `torch.softmax(x, -1=0)` is not
  const BAD_RULE = `rule bad_kw\n  title "t"\n  priority 90\n  match\n    y = softmax($x, ...)\n  rewrite expr y\n    "torch.softmax({x}, {y.dim}=0)"\n`;
  const GOOD_RULE = `rule halve\n  title "x / 2 -> x * 0.5"\n  priority 10\n  match\n    y = div($x, 2)\n  rewrite expr y\n    "{x} * 0.5"\n`;
  const MODEL = 'import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def forward(self, x):\n        s = torch.softmax(x, dim=-1)\n        return torch.relu(s / 2)\n';

  it('is dropped with the reason; the other sites of the file are written', () => {
    const dir = tempProject({ 'm.py': MODEL, 'r.rule': BAD_RULE + GOOD_RULE });
    const run = runRewrite([join(dir, 'm.py')], { rules: join(dir, 'r.rule') });
    const f = run.files[0];
    expect(f.error).toBeUndefined();
    const bad = run.sites.find((s) => s.rule === 'bad_kw')!;
    expect(bad.decision).toBe('skipped');
    expect(bad.reason).toMatch(/the rewritten code would not parse \(7:\d+: .*\); the site is left as it is/);
    expect(run.sites.find((s) => s.rule === 'halve')!.decision).toBe('rewritten');
    expect(f.rewritten).toContain('return torch.relu((s * 0.5))');
    expect(f.rewritten).toContain('s = torch.softmax(x, dim=-1)');
  });

  it('unparsableSites names only the groups that do not parse alone', () => {
    const text = 'def f(x):\n    a = g(x)\n    b = h(a)\n    return b\n';
    const f = synthFile(text);
    const at = (s: string) => text.indexOf(s);
    const good: Edit = { start: at('g(x)'), end: at('g(x)') + 4, text: 'gg(x)', rule: 't', line: 2 };
    const bad: Edit = { start: at('h(a)'), end: at('h(a)') + 4, text: 'h(a))(', rule: 't', line: 3 };
    const out = unparsableSites(f, [[good], [bad]]);
    expect([...out.keys()]).toEqual([1]);
    expect(out.get(1)).toMatch(/^the rewritten code would not parse \(3:/);
  });
});
