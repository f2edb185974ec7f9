// The rewritten file's syntax check parses only the edited runs of statements where their
// validity is local, and the whole file otherwise. Each case says which way it must go
// (parsesLocally) and that the verdict is the whole file's (applyEdits refuses what does not parse).
import { describe, expect, it } from 'vitest';
import { parsePython } from '../../src/parse/python.js';
import { sourceFromText } from '../../src/parse/source.js';
import { applyEdits, spliceEdits, type Edit } from '../../src/synth/edits.js';
import type { SynthFile } from '../../src/synth/source.js';
import { parsesLocally } from '../../src/synth/syntax-check.js';

function synthFile(text: string): SynthFile {
  const parsed = parsePython(sourceFromText('m.py', text));
  expect(parsed.diagnostics).toEqual([]);
  return { path: 'm.py', source: parsed.source, root: parsed.root, hadErrors: false, newline: '\n', bom: false, lineLength: 88 };
}

/** An edit replacing the first occurrence of `from` (after `after`, when given) by `to`. */
function replace(text: string, from: string, to: string, after = ''): Edit {
  const start = text.indexOf(from, after ? text.indexOf(after) : 0);
  expect(start).toBeGreaterThanOrEqual(0);
  return { start, end: start + from.length, text: to, rule: 'test', line: 1 };
}

/** Whether the local check vouches for the edits, and whether applyEdits keeps them. */
function check(text: string, edits: Edit[]): { local: boolean; kept: boolean } {
  const f = synthFile(text);
  const { text: rewritten, placed } = spliceEdits(text, edits);
  const result = applyEdits(f, edits);
  if (result.error) expect(result.error).toMatch(/the rewritten code would not parse/);
  return { local: parsesLocally(f.root, text, placed, rewritten), kept: !result.error };
}

const MODEL = [
  'import torch',
  '',
  '',
  'class A(torch.nn.Module):',
  '    def forward(self, x):',
  '        s = torch.softmax(x, dim=-1)',
  '        doc = """',
  'a line of text at column 0',
  '"""',
  '        t = s * 2',
  '        return t',
  '',
  '',
  'def g(x):',
  '    a = 1; b = 2',
  '    return a + b',
  '',
  '',
  'X = 1; Y = 2',
  '',
].join('\n');

describe('syntax check of the rewritten file', () => {
  // one replacement each: [what it shows, text replaced, replacement, checked locally, kept]
  const CASES: [string, string, string, boolean, boolean][] = [
    ['a run of whole statements is parsed alone; a valid rewrite is kept', '        t = s * 2', '        if s is not None:\n            t = s + s\n        else:\n            t = s * 2', true, true],
    ['a rewritten expression is parsed with the statement around it', 'torch.softmax(x, dim=-1)', '(fast(x) if ok else torch.softmax(x, dim=-1))', true, true],
    ['a line of the region indented less than it (a string at column 0): the whole file', '"""\na line', '"""\nanother line', false, true],
    ['a rewrite that does not parse is refused', 'torch.softmax(x, dim=-1)', 'fast(x))(', false, false],
    // a new module-level statement after the method: valid, but not within the run it replaced
    ['a statement leaving its block: the whole file, which parses', '        return t', '        return t\n\n\nZ = 3', false, true],
    ['a statement breaking its block: the whole file, which does not parse', '        t = s * 2', '        t = s * 2\n    else:', false, false],
    ['a statement sharing its line (a; b) is checked with the statement around it', 'b = 2', 'b = 3', true, true],
    ['... and refused when that does not parse', 'b = 2', 'b = (', false, false],
    ['a statement sharing its line at the top level: the whole file', 'Y = 2', 'Y = 3', false, true],
    ['... which is refused when it does not parse', 'Y = 2', 'Y = (', false, false],
    ['a line continued with a backslash does not reach past its region', '        t = s * 2', '        t = s * 2 + \\', false, false],
  ];
  for (const [what, from, to, local, kept] of CASES) {
    it(what, () => expect(check(MODEL, [replace(MODEL, from, to)])).toEqual({ local, kept }));
  }

  it('keeps regions apart: a bracket opened in one cannot be closed by the next', () => {
    const open = replace(MODEL, '        t = s * 2', '        t = f(s,');
    const close = replace(MODEL, '    return a + b', '    return a + b)');
    expect(check(MODEL, [open, close])).toEqual({ local: false, kept: false });
  });

  it('checks an insertion between top-level statements with the statement before it', () => {
    const at = MODEL.indexOf('\n\nclass A') + 1;
    const ins: Edit = { start: at, end: at, text: 'try:\n    import fast\nexcept ImportError:\n    fast = None\n', rule: 'import', line: 1 };
    expect(check(MODEL, [ins])).toEqual({ local: true, kept: true });
    expect(check(MODEL, [{ ...ins, text: 'try:\n    import fast\n' }])).toEqual({ local: false, kept: false });
  });

  it('parses a region repeated with the same text once, and still refuses it when it does not parse', () => {
    const twice = `${MODEL}\n\nclass B(torch.nn.Module):\n    def forward(self, x):\n        s = torch.softmax(x, dim=-1)\n        return s\n`;
    const both = (to: string) => [replace(twice, '        s = torch.softmax(x, dim=-1)', to), replace(twice, '        s = torch.softmax(x, dim=-1)', to, 'class B')];
    expect(check(twice, both('        s = fast(x)'))).toEqual({ local: true, kept: true });
    expect(check(twice, both('        s = fast(x'))).toEqual({ local: false, kept: false });
  });
});
