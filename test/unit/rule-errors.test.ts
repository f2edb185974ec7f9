// Rule-file problems at the place they name: an unbound placeholder, or one an expression rewrite
// cannot fill, at the placeholder (the loader gives the `rewrite` line), a template that is not
// Python at the template's own line.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { placeRuleDiagnostic, ruleProblems } from '../../src/cli/rule-errors.js';
import { loadRuleFile, RuleError } from '../../src/match/rule.js';
import { tempProject } from '../helpers/ir.js';

const rule = (guard: string, code: string[]) => [
  'rule scaled',
  '  priority 45',
  '  match',
  '    y = softmax($x, ...)',
  '  rewrite expr y',
  '    // {x} is the scores, {oops} is not written here',
  `    guard "${guard}"`,
  ...code.map((c) => `    "${c}"`),
  '',
].join('\n');

/** The diagnostics of loading `text` as a rule file. */
function loadErrors(text: string) {
  const file = join(tempProject({ 'r.rule': text }), 'r.rule');
  try { return { rules: loadRuleFile(file), errors: [] }; } catch (e) {
    if (!(e instanceof RuleError)) throw e;
    return { rules: [], errors: e.diagnostics };
  }
}

describe('rule file problems', () => {
  it('an unbound placeholder in the second line of a rewrite: that line, the placeholder\'s column; comments skipped', () => {
    const { errors } = loadErrors(rule('_adopt is not None', ['_adopt.softmax({x},', ' dim={oops})']));
    expect(errors).toHaveLength(1);
    expect(errors[0].line).toBe(5);
    expect(placeRuleDiagnostic(errors[0])).toMatchObject({ line: 9, col: 11 });
  });

  it('an unbound placeholder in a guard, and one written as a keyword ({,name=value})', () => {
    const inGuard = loadErrors(rule('_adopt is not None and {oops}.dim() > 1', ['_adopt.softmax({x}, dim=-1)'])).errors;
    expect(placeRuleDiagnostic(inGuard[0])).toMatchObject({ line: 7, col: 35 });
    const keyword = loadErrors(rule('_adopt is not None', ['_adopt.softmax({x}, dim=-1{,dtype=oops})'])).errors;
    expect(keyword[0].message).toMatch(/'oops' is not bound/);
    expect(placeRuleDiagnostic(keyword[0])).toMatchObject({ line: 8, col: 32 });
  });

  it("a placeholder reading the value 'rewrite expr' replaces is refused at load, at the placeholder", () => {
    // `{y}` in an expression rewrite of y wrote `y = (_adopt.softmax(y, ...) if ... else softmax(x))`:
    // y read before it is assigned, accepted by the loader and by the rewrite alike
    const own = loadErrors(rule('_adopt is not None', ['_adopt.softmax({y}, dim=-1)'])).errors;
    expect(own).toHaveLength(1);
    expect(own[0].message).toMatch(/^rule scaled: \{y\} reads the value of 'y', the expression 'rewrite expr y' replaces/);
    expect(placeRuleDiagnostic(own[0])).toMatchObject({ line: 8, col: 21 });
    const keyword = loadErrors(rule('_adopt is not None', ['_adopt.softmax({x}, dim=-1{,dtype=y})'])).errors;
    expect(placeRuleDiagnostic(keyword[0])).toMatchObject({ line: 8, col: 32, message: expect.stringMatching(/\{,dtype=y\} reads the value of 'y'/) });
    const inGuard = loadErrors(rule('_adopt is not None and {y|x}.dim() > 1', ['_adopt.softmax({x}, dim=-1)'])).errors;
    expect(placeRuleDiagnostic(inGuard[0])).toMatchObject({ line: 7, col: 35, message: expect.stringMatching(/where the guard runs/) });
    // parts of the matched call and its presence are read off the code, not its value
    expect(loadErrors(rule('_adopt is not None', ['_adopt.softmax({x}, dim={y.dim}{,y.dtype}{?y:})'])).errors).toEqual([]);
    // a statements rewrite assigns the result: there {y} is the name it is written to
    const stmts = rule('_adopt is not None', ['{y} = _adopt.softmax({x}, dim=-1)']).replace('rewrite expr y', 'rewrite stmts');
    expect(loadErrors(stmts).errors).toEqual([]);
  });

  it('{original} and {indent}, which no rewrite fills, are refused at load, at the placeholder', () => {
    for (const name of ['original', 'indent']) {
      const { errors } = loadErrors(rule('_adopt is not None', [`_adopt.softmax({x}, dim=-1) if {${name}} else None`]));
      expect(errors).toHaveLength(1);
      expect(errors[0].message).toMatch(new RegExp(`uses \\{${name}\\}, but '${name}' is not bound by the pattern .*adopt fills no \\{${name}\\} placeholder`));
      expect(placeRuleDiagnostic(errors[0])).toMatchObject({ line: 8, col: 37 });
    }
  });

  it('another rule error keeps its place', () => {
    const d = { severity: 'error' as const, code: 'rule', file: '/nonexistent.rule', line: 3, col: 5, message: "unknown constraint 'last_dimm'" };
    expect(placeRuleDiagnostic(d)).toBe(d);
  });

  it('a guard that is not Python is placed at the guard, a rewrite at its first line', () => {
    const guard = loadErrors(rule('_adopt is not None and (', ['_adopt.softmax({x}, dim=-1)'])).rules[0];
    expect(ruleProblems(guard, { examples: false })).toEqual([expect.objectContaining({ line: 7, col: 11, message: expect.stringMatching(/^rule scaled: guard .* is not a Python expression/) })]);
    const code = loadErrors(rule('_adopt is not None', ['_adopt.softmax(({x},', ' dim=-1)'])).rules[0];
    expect(ruleProblems(code, { examples: false })).toEqual([expect.objectContaining({ line: 8, col: 5, message: expect.stringMatching(/would not be Python/) })]);
  });

  it('await, yield and a ; in an expression rewrite are refused at load: each parses, and would change the function', () => {
    const cases: [string, RegExp][] = [
      ['await _adopt.softmax({x}, dim=-1)', /uses 'await', which would make the rewritten function a coroutine/],
      ['(yield _adopt.softmax({x}, dim=-1))', /uses 'yield', which would make the rewritten function a generator/],
      ['_adopt.softmax({x}, dim=-1); {x}', /holds ';': an expression rewrite replaces one expression with one expression/],
    ];
    for (const [code, why] of cases) {
      const { errors } = loadErrors(rule('_adopt is not None', [code]));
      expect(errors.map((e) => e.message), code).toEqual([expect.stringMatching(why)]);
    }
    // inside a string the words are text
    expect(loadErrors(rule('_adopt is not None', ["_adopt.softmax({x}, dim=-1) if 'await; yield' else {x}"])).errors).toEqual([]);
  });
});
