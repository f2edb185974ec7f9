// Rule-file problems at the place they name: an unbound placeholder at the placeholder (the loader
// gives the `rewrite` line), a template that is not Python at the template's own line.
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
});
