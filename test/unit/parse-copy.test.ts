// The JavaScript copy of a tree-sitter tree skips native calls where the grammar makes the
// answer certain (token ends, leaves, fields of field-less types). It must still be the same tree:
// compared here node by node with tree-sitter's own nodes, on clean sources and on sources with
// syntax errors (where MISSING tokens break the shortcuts' assumptions).
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type Parser from 'tree-sitter';
import { describe, expect, it } from 'vitest';
import { parsePython, type SyntaxNode } from '../../src/parse/python.js';
import { sourceFromText } from '../../src/parse/source.js';
import { modelsDir } from '../helpers/fixtures.js';

const require = createRequire(import.meta.url);
const TreeSitter = require('tree-sitter') as typeof Parser;
const parser = new TreeSitter();
parser.setLanguage(require('tree-sitter-python'));

/** Differences between the copy and tree-sitter's tree, as readable lines (empty when equal). */
function differences(text: string): string[] {
  const raw = parser.parse(text).rootNode;
  const copy = parsePython(sourceFromText('<test>', text)).root;
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
      const name = r.fieldNameForChild(i);
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

describe('tree copy', () => {
  it('matches tree-sitter on every fixture model', () => {
    const files = readdirSync(modelsDir).filter((f) => f.endsWith('.py'));
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) expect(differences(readFileSync(join(modelsDir, f), 'utf8')), f).toEqual([]);
  });

  it('matches tree-sitter on operators and tokens the shortcuts treat specially', () => {
    for (const text of TRICKY) expect(differences(text), text).toEqual([]);
  });

  it('matches tree-sitter where syntax errors insert MISSING tokens', () => {
    const broken = ['def f(x:\n    return x +\n', 'a = (1, 2\nb = [3 if c else]\n', 'if a is not:\n  pass\n', 'x = {"k": }\n', 'def g(:\n  y = not in z\n'];
    for (const text of broken) expect(differences(text), text).toEqual([]);
    for (const text of TRICKY) expect(differences(text.replace(/\)/g, '')), text).toEqual([]);
  });
});
