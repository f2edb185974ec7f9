// A near miss refused by a constraint says what the pattern lines it names are (the op matched and
// its line, or the line as the rule writes it), not their names in the rule (`ab, av are not all
// present`), which mean nothing to someone reading about their model.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/pipeline/index.js';
import { tempProject } from '../helpers/ir.js';

const rule = (match: string[], where: string) => `rule probe
  title "probe"
  match
${match.map((l) => `    ${l}`).join('\n')}
  where
    ${where}
  detect "probe"
`;

const SCORES = ['s = matmul($q, $k)', 'a = add(s, $bias)?', 'v = view(a, ...)?', 'p = softmax(v, ...)'];

/** The reasons of the near misses of the rule on `body` (the body of `f(q, k, b, v)`). */
function reasons(ruleText: string, body: string[]): string[] {
  const dir = tempProject({ 'm.py': `import torch\n\n\ndef f(q, k, b, v):\n${body.map((l) => `    ${l}`).join('\n')}\n`, 'r.rule': ruleText });
  const run = runRewrite([join(dir, 'm.py')], { rules: join(dir, 'r.rule'), builtinRules: false, whyNot: true });
  return run.nearMisses.filter((n) => n.constraint).map((n) => n.reason);
}

const viewOnly = ['s = torch.matmul(q, k)', 's = s.view(2, 3)', 'return s.softmax(-1)'];
const both = ['s = torch.matmul(q, k)', 's = s + b', 's = s.view(2, 3)', 'return s.softmax(-1)'];

describe('a constraint naming pattern lines', () => {
  it('together: the line found, where, and the line missing as the rule writes it', () => {
    expect(reasons(rule(SCORES, 'together(a, v)'), viewOnly)).toEqual([
      "view at line 6 (pattern line 'v = view(a, ...)?') is here without 'a = add(s, $bias)?': the rule takes these optional lines together or not at all",
    ]);
  });

  it('needs: the line found without the one it needs', () => {
    expect(reasons(rule(SCORES, 'needs(v, a)'), viewOnly)).toEqual([
      "view at line 6 (pattern line 'v = view(a, ...)?') is here without 'a = add(s, $bias)?', which it needs",
    ]);
  });

  it('apart: both lines found', () => {
    expect(reasons(rule(SCORES, 'apart(a, v)'), both)).toEqual([
      "add at line 6 (pattern line 'a = add(s, $bias)?') and view at line 7 (pattern line 'v = view(a, ...)?') are both here: the rule takes at most one of them",
    ]);
  });

  it('single_use and not_escaping: the op whose value is used elsewhere', () => {
    const used = ['s = torch.matmul(q, k)', 'print(s)', 's = s.view(2, 3)', 'return s.softmax(-1)'];
    expect(reasons(rule(SCORES, 'single_use(s)'), used)).toEqual([
      "the result of matmul at line 5 (pattern line 's = matmul($q, $k)') is also used by print at line 6",
    ]);
    expect(reasons(rule(SCORES, 'not_escaping(s)'), used)).toEqual([
      "matmul at line 5 (pattern line 's = matmul($q, $k)') escapes the pattern",
    ]);
  });

  it('transposed_by: the product that took its transposed form', () => {
    const match = ['p = softmax($x, ...)', 'pt = transpose(p, ...)?', 'o = matmul(pt, $v) or matmul($v, pt)'];
    expect(reasons(rule(match, 'transposed_by(o, pt)'), ['p = q.softmax(-1)', 'return v @ p'])).toEqual([
      "matmul at line 6 (pattern line 'o = matmul(pt, $v) or matmul($v, pt)') takes its transposed form without a transposition before it",
    ]);
  });
});
