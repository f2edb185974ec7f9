// A file's syntax error as Python reports it: the first one only. tree-sitter's recovery from an
// error guesses where the broken statement ends, and what it flags after the guess is often a
// valid line it misread.
import { describe, expect, it } from 'vitest';
import { parsePython } from '../../src/parse/python.js';
import { sourceFromText } from '../../src/parse/source.js';
import { PYTHON3_CASES } from '../helpers/python3-cases.js';

const extraParen = [
  'class M:',
  '    def forward(self, q, k):',
  '        attn = q @ k.transpose(-2, -1))',
  '        q = q * 2',
  '        return attn',
  '',
].join('\n');

const twoBroken = 'def f(:\n    pass\n\n\ndef g(x):\n    return x +\n';

describe('syntax errors of a file', () => {
  for (const front of ['native', 'cursor'] as const) {
    it(`${front}: an unmatched ')' is one error at its line, not also at the valid line after it`, () => {
      const d = parsePython(sourceFromText('m.py', extraParen), front).diagnostics;
      expect(d).toEqual([expect.objectContaining({ severity: 'error', code: 'syntax', file: 'm.py', line: 3 })]);
    });

    it(`${front}: of two broken statements, the first is reported`, () => {
      const d = parsePython(sourceFromText('m.py', twoBroken), front).diagnostics;
      expect(d).toEqual([expect.objectContaining({ code: 'syntax', line: 1 })]);
    });
  }
});

describe('what python3 refuses and the grammar accepts', () => {
  for (const front of ['native', 'cursor'] as const) {
    for (const c of PYTHON3_CASES) {
      it(`${front}: ${c.name} is ${c.line === null ? 'accepted' : `a syntax error at line ${c.line}`}`, () => {
        const d = parsePython(sourceFromText('m.py', c.text), front).diagnostics.filter((x) => x.severity === 'error');
        if (c.line === null) expect(d).toEqual([]);
        else expect(d).toEqual([expect.objectContaining({ code: 'syntax', file: 'm.py', line: c.line, col: c.col ?? 1 })]);
      });
    }
  }

  it('the earlier of a grammar error and a refused Python 2 form is the one reported', () => {
    const d = parsePython(sourceFromText('m.py', 'print "a"\ndef f(:\n    pass\n')).diagnostics;
    expect(d).toEqual([expect.objectContaining({ code: 'syntax', line: 1, message: expect.stringMatching(/print statement/) })]);
    const e = parsePython(sourceFromText('m.py', 'def f(:\n    pass\nprint "a"\n')).diagnostics;
    expect(e).toEqual([expect.objectContaining({ code: 'syntax', line: 1, message: expect.not.stringMatching(/print/) })]);
  });
});
