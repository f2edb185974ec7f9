// A file's syntax error as Python reports it: the first one only. tree-sitter's recovery from an
// error guesses where the broken statement ends, and what it flags after the guess is often a
// valid line it misread.
import { describe, expect, it } from 'vitest';
import { parsePython } from '../../src/parse/python.js';
import { sourceFromText } from '../../src/parse/source.js';

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
