// The syntax tree in JavaScript comes from one of two front ends: the native walk's flat records,
// or a copy through tree-sitter's cursor that skips native calls where the grammar makes the
// answer certain (token ends, leaves, fields of field-less types). Each must be tree-sitter's own
// tree: compared here node by node with tree-sitter's nodes, on the fixtures and sources with syntax errors (where MISSING tokens break the shortcuts'
// assumptions) or characters outside ASCII (where bytes and UTF-16 indices part). The two front
// ends on a sample of HF-199 (fetched on first use): test/parse-front-ends.test.ts.
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type Parser from 'tree-sitter';
import { describe, expect, it } from 'vitest';
import { parsePython, type FrontEnd, type SyntaxNode } from '../../src/parse/python.js';
import { sourceFromText } from '../../src/parse/source.js';
import { modelsDir } from '../helpers/fixtures.js';

const require = createRequire(import.meta.url);
const TreeSitter = require('tree-sitter') as typeof Parser;
const parser = new TreeSitter();
parser.setLanguage(require('tree-sitter-python'));

/** Differences between the copy and tree-sitter's tree, as readable lines (empty when equal). */
function differences(text: string, front: FrontEnd): string[] {
  const raw = parser.parse(text).rootNode;
  const copy = parsePython(sourceFromText('<test>', text), front).root;
  const out: string[] = [];
  const stack: [Parser.SyntaxNode, SyntaxNode][] = [[raw, copy]];
  while (stack.length && out.length < 5) {
    const [r, c] = stack.pop()!;
    const where = `${r.type}@${r.startIndex}`;
    if (r.type !== c.type || r.isNamed !== c.isNamed || r.startIndex !== c.startIndex || r.endIndex !== c.endIndex) {
      out.push(`${where}: copied as ${c.type}@${c.startIndex}-${c.endIndex} (named ${c.isNamed}), tree-sitter ${r.startIndex}-${r.endIndex} (named ${r.isNamed})`);
      continue;
    }
    if (r.childCount !== c.childCount) { out.push(`${where}: ${c.childCount} children copied, tree-sitter has ${r.childCount}`); continue; }
    for (let i = 0; i < r.childCount; i++) {
      const name = r.fieldNameForChild(i) ?? null;
      if (c.fieldNameForChild(i) !== name) out.push(`${where}: child ${i} has field ${c.fieldNameForChild(i)}, tree-sitter ${name}`);
      if (name && c.childForFieldName(name)?.startIndex !== r.childForFieldName(name)?.startIndex) out.push(`${where}: field ${name} differs`);
      stack.push([r.child(i)!, c.child(i)!]);
    }
  }
  return out;
}

const TRICKY = [
  'if a is not b and c not in d:\n    x = f"{y!r:>{w}} {{z}}" + "\\n\\t" + b"\\x00"\n',
  'try:\n    pass\nexcept* ValueError as e:\n    raise\n',
  'def f(a, /, b, *, c=1, **kw) -> int:\n    return (yield) if a else ...\n',
  'x = [i for i in range(3) if i not in (1,)]\nlambda q, *r: q @ r[0]\nprint >> sys.stderr, "x"\n',
  'class C(B, metaclass=M):\n    @property\n    def p(self): return self._p  # comment\n',
];

const BROKEN = ['def f(x:\n    return x +\n', 'a = (1, 2\nb = [3 if c else]\n', 'if a is not:\n  pass\n', 'x = {"k": }\n', 'def g(:\n  y = not in z\n'];
const NON_ASCII = 'def f(\u00e9t\u00e9):\n    return "\u65e5\u672c \ud83d\ude00" + \u00e9t\u00e9  # \u00fc\n\nx = f(1)\n';

describe.each<FrontEnd>(['native', 'cursor'])('syntax tree from the %s front end', (front) => {
  it('matches tree-sitter on every fixture model', () => {
    const files = readdirSync(modelsDir).filter((f) => f.endsWith('.py'));
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) expect(differences(readFileSync(join(modelsDir, f), 'utf8'), front), f).toEqual([]);
  });

  it('matches tree-sitter on operators and tokens the shortcuts treat specially, and outside ASCII', () => {
    for (const text of [...TRICKY, NON_ASCII]) expect(differences(text, front), text).toEqual([]);
  });

  it('matches tree-sitter where syntax errors insert MISSING tokens', () => {
    for (const text of BROKEN) expect(differences(text, front), text).toEqual([]);
    for (const text of TRICKY) expect(differences(text.replace(/\)/g, ''), front), text).toEqual([]);
  });
});

describe('the two front ends', () => {
  it('report the same syntax errors', () => {
    for (const text of [...BROKEN, NON_ASCII.replace(')', '')]) {
      const native = parsePython(sourceFromText('<test>', text), 'native').diagnostics;
      expect(native.length, text).toBeGreaterThan(0);
      expect(native, text).toEqual(parsePython(sourceFromText('<test>', text), 'cursor').diagnostics);
    }
  });
});
