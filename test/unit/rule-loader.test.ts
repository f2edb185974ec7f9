// The rule loader in process: which rules `--rules` selects, errors in the rule writer's words,
// the constraint registry, the forms adopt refuses, and the generated reference.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONSTRAINTS } from '../../src/match/constraints.js';
import { exampleFile } from '../../src/match/rule-examples.js';
import { REFERENCE_BEGIN, REFERENCE_END, ruleReference } from '../../src/match/rule-reference.js';
import { templateProblems } from '../../src/match/rule-template.js';
import { loadRuleFiles, parseRules, RuleError, selectRules } from '../../src/match/rule.js';
import { repoRoot } from '../helpers/cli.js';
import { tempProject } from '../helpers/ir.js';

const mine = 'rule my_softmax\n  priority 45\n  match\n    y = softmax($x, ...)\n  where\n    last_dim(y)\n  rewrite expr y\n    guard "True"\n    "torch.softmax({x}, -1)"\n';
const names = (spec: string | string[] | undefined, builtin?: boolean) => selectRules(spec, { builtin }).rules.map((r) => r.name).sort();
const library = () => names(undefined);

function errorOf(f: () => unknown): RuleError {
  try { f(); } catch (e) { if (e instanceof RuleError) return e; throw e; }
  throw new Error('no error');
}

describe('--rules selection', () => {
  it('a library name and a file together: that library rule and the file\'s rules', () => {
    const dir = tempProject({ 'my.rule': mine });
    expect(names(`softmax,${join(dir, 'my.rule')}`)).toEqual(['my_softmax', 'softmax']);
  });

  it('a file or directory alone adds to the whole library; --no-builtin-rules leaves only it', () => {
    const dir = tempProject({ 'rules/my.rule': mine });
    expect(names(join(dir, 'rules'))).toEqual([...library(), 'my_softmax'].sort());
    expect(names(join(dir, 'rules', 'my.rule'), false)).toEqual(['my_softmax']);
  });

  it('repeated values add up', () => {
    const dir = tempProject({ 'my.rule': mine });
    expect(names(['softmax', 'attention', join(dir, 'my.rule')])).toEqual(['attention', 'my_softmax', 'softmax']);
  });

  it('a user rule named like a library rule replaces it; two user files defining one name are refused', () => {
    const dir = tempProject({ 'a/softmax.rule': mine.replace('my_softmax', 'softmax'), 'b/dup.rule': mine, 'c/dup.rule': mine });
    const softmax = selectRules(join(dir, 'a'), {}).rules.filter((r) => r.name === 'softmax');
    expect(softmax.map((r) => r.file)).toEqual([join(dir, 'a', 'softmax.rule')]);
    expect(errorOf(() => selectRules([join(dir, 'b'), join(dir, 'c')])).message).toMatch(/c\/dup\.rule:1:1: error: rule 'my_softmax' is also defined at .*b\/dup\.rule:1/);
  });

  it('unknown names, missing paths, and a library name with --no-builtin-rules are errors', () => {
    expect(errorOf(() => selectRules('sofmax')).message).toMatch(/unknown rule 'sofmax' \(library rules: .*softmax/);
    expect(errorOf(() => selectRules('./nowhere.rule')).message).toMatch(/nowhere\.rule: error: no such rule file or directory/);
    expect(errorOf(() => selectRules('softmax', { builtin: false })).message).toMatch(/--no-builtin-rules leaves out/);
    expect(errorOf(() => selectRules(undefined, { builtin: false })).message).toMatch(/no rules to use/);
  });
});

describe('rule files', () => {
  it('example paths are relative to the rule file\'s own directory', () => {
    const [r] = parseRules(`${mine}  example "cases/before.py" "cases/after.py"\n`, '/somewhere/rules/my.rule');
    expect(exampleFile(r, r.examples[0].before)).toBe('/somewhere/rules/cases/before.py');
    expect(r.examples[0].line).toBe(10);
    for (const lib of selectRules().rules) for (const ex of lib.examples) expect(readFileSync(exampleFile(lib, ex.before), 'utf8')).toMatch(/import/);
  });

  it('parse errors name the place and say what is wrong without the grammar\'s internals', () => {
    const cases: [string, RegExp][] = [
      ['rule b\n  match\n    y = softmax($x, dim=-1\n', /^f\.rule:3:27: error: cannot parse the rule: the line ends before its brackets are closed: expected '\)' or ','$/],
      ['rule b\n  title "x"\n  match\n  y = softmax($x)\n', /^f\.rule:4:3: error: cannot parse the rule: expected an indented block/],
      ['rule b\n  titel "x"\n', /^f\.rule:2:3: error: cannot parse the rule: 'titel' is not a rule item: a rule holds 'title', .*'example' lines/],
      ['rule b\n  matchy\n    y = softmax($x)\n', /^f\.rule:2:3: error: cannot parse the rule: 'matchy' is not a keyword here \(did you mean 'match' followed by a space\?\)$/],
      ['rule 9b\n  match\n    y = softmax($x)\n', /^f\.rule:1:6: error: cannot parse the rule: unexpected '9b'; expected a name$/],
    ];
    for (const [text, want] of cases) {
      const e = errorOf(() => parseRules(text, 'f.rule'));
      expect(e.message).toMatch(want);
      expect(e.message).not.toMatch(/⟪|⟫|identPart|\[rule\]/);
    }
  });

  it('a directory with several broken files reports every one of them', () => {
    const dir = tempProject({ 'a.rule': 'rule a\n  titel "x"\n', 'b.rule': mine, 'c.rule': 'rule c\n  match\n    y = softmax($x\n' });
    const e = errorOf(() => loadRuleFiles([dir]));
    expect(e.diagnostics.map((d) => `${d.file.split('/').pop()}:${d.line}`)).toEqual(['a.rule:2', 'c.rule:3']);
  });

  it('forms adopt does not apply are refused with a reason: other kernel libraries, rewrite init, import and bind lines', () => {
    const liger = mine.replace('  rewrite', '  kernel cuda liger "liger_kernel.ops.softmax"\n  rewrite');
    expect(errorOf(() => parseRules(liger, 'l.rule')).message).toMatch(/^l\.rule:7:3: error: kernel library 'liger' is not supported/);
    const init = 'rule i\n  match\n    y = softmax($x, ...)\n  rewrite init y\n    "fast({x})"\n';
    expect(errorOf(() => parseRules(init, 'i.rule')).message).toMatch(/^i\.rule:4:3: error: 'rewrite init' is not supported/);
    const imp = mine.replace('    guard "True"\n', '    guard "True"\n    import "import fast"\n');
    expect(errorOf(() => parseRules(imp, 'm.rule')).message).toMatch(/^m\.rule:9:5: error: 'import' lines in a rewrite are not supported/);
    const bind = mine.replace('    guard "True"\n', '    guard "True"\n    bind z = "{x}"\n');
    expect(errorOf(() => parseRules(bind, 'b.rule')).message).toMatch(/^b\.rule:9:5: error: 'bind' lines in a rewrite are not supported/);
  });

  it('a kernel call with an argument the kernel does not take is refused at the rewrite', () => {
    const call = (args: string) => mine.replace('guard "True"', 'guard "_adopt is not None"').replace('"torch.softmax({x}, -1)"', `"_adopt.softmax(${args})"`);
    expect(parseRules(call('{x}, dim=-1{,y.dtype}'), 'k.rule')).toHaveLength(1);
    expect(errorOf(() => parseRules(call('{x}, dim=-1, temperature=2.0'), 'k.rule')).message).toMatch(/^k\.rule:7:3: error: _adopt\.softmax has no parameter 'temperature' \(it takes x, dim, dtype\)/);
    expect(errorOf(() => parseRules(call('{x}, -1, None, f({x}, 2)'), 'k.rule')).message).toMatch(/_adopt\.softmax takes 3 argument\(s\) \(x, dim, dtype\), the rewrite passes 4/);
  });

  it('templates that would not be Python are found without a match', () => {
    const [bad] = parseRules(mine.replace('"torch.softmax({x}, -1)"', '"torch.softmax({x}, -1))("'), 'b.rule');
    expect(templateProblems(bad)).toEqual([expect.stringMatching(/the rewrite expression would not be Python/)]);
    for (const r of selectRules().rules) expect(templateProblems(r), r.name).toEqual([]);
  });
});

describe('constraint registry', () => {
  it('unknown constraints and arguments of the wrong kind or number are refused at rule-file:line:col', () => {
    const use = (c: string) => errorOf(() => parseRules(mine.replace('last_dim(y)', c), 'c.rule')).message;
    expect(use('sometimes(y)')).toMatch(/^c\.rule:6:5: error: unknown constraint 'sometimes' \(known: .*last_dim/);
    expect(use('last_dim($x)')).toMatch(/^c\.rule:6:5: error: argument 1 of last_dim must be a pattern line: last_dim\(line\)/);
    expect(use('last_dim(y, y)')).toMatch(/^c\.rule:6:5: error: last_dim takes 1 argument\(s\), not 2/);
    expect(use('const($x, y)')).toMatch(/argument 2 of const must be a literal/);
  });

  it('every constraint is documented; those written for one rule family say which, and those rules use them', () => {
    const used = new Map<string, Set<string>>();
    for (const r of selectRules().rules) for (const c of r.where) used.set(c.name, (used.get(c.name) ?? new Set()).add(r.name));
    for (const c of CONSTRAINTS.values()) {
      expect(c.doc.length, c.name).toBeGreaterThan(20);
      for (const rule of c.rules ?? []) expect(used.get(c.name)?.has(rule), `${c.name} in ${rule}`).toBe(true);
    }
    expect([...CONSTRAINTS.values()].filter((c) => c.rules).map((c) => c.name).sort()).toEqual(['cast_back', 'casts_alike', 'chunk_halves', 'evens_odds', 'gelu_by_default', 'halves', 'heads_given', 'no_down_projection', 'no_pair', 'not_gating', 'pairs_merged', 'pairs_view', 'pointwise_conv', 'reshaped_to_a_shape', 'row_max', 'transposed_by', 'vocab_projection']);
  });

  it('docs/rule-language.md holds the reference generated from the registries', () => {
    const doc = readFileSync(join(repoRoot, 'docs', 'rule-language.md'), 'utf8');
    const inDoc = doc.slice(doc.indexOf(REFERENCE_BEGIN) + REFERENCE_BEGIN.length, doc.indexOf(REFERENCE_END)).trim();
    expect(inDoc).toBe(ruleReference().trim());
    for (const c of CONSTRAINTS.keys()) expect(inDoc).toContain(`\`${c}(`);
  });
});

describe('refuse cases carried by a rule', () => {
  it('a marked line must be refused with the marked reason, and nothing rewritten', async () => {
    const { refuseCases, testRefusal } = await import('../../src/cli/rules-test.js');
    const code = (dim: string, mark: string) => `import torch\n\n\ndef f(x):\n    return torch.softmax(x, dim=${dim})  # refuse: ${mark}\n`;
    const dir = tempProject({
      'my_softmax/my_softmax.rule': mine,
      'my_softmax/refuse/a_right.py': code('1', 'not the last dimension'),
      'my_softmax/refuse/b_wrong_reason.py': code('1', 'too hot'),
      'my_softmax/refuse/c_rewritten.py': code('-1', 'not the last dimension'),
      'my_softmax/refuse/d_unmarked.py': 'x = 1\n',
    });
    const [rule] = loadRuleFiles([join(dir, 'my_softmax')]);
    const cases = refuseCases(rule);
    expect(cases.map((f) => f.split('/').pop())).toEqual(['a_right.py', 'b_wrong_reason.py', 'c_rewritten.py', 'd_unmarked.py']);
    expect(testRefusal(rule, cases[0])).toEqual([]);
    expect(testRefusal(rule, cases[1])).toEqual([expect.stringMatching(/^line 5: expected a refusal saying 'too hot'; got: softmax over dim=1/)]);
    expect(testRefusal(rule, cases[2])).toEqual(expect.arrayContaining([expect.stringMatching(/^line 5: rewritten, but the case says the rule must refuse it/)]));
    expect(testRefusal(rule, cases[3])).toEqual([expect.stringMatching(/no line is marked/)]);
  });

  it('the library rules carry refuse cases that pass', async () => {
    const { refuseCases, testRefusal } = await import('../../src/cli/rules-test.js');
    const withCases = selectRules().rules.filter((r) => refuseCases(r).length);
    expect(withCases.map((r) => r.name).sort()).toEqual(expect.arrayContaining(['linear_gelu', 'rmsnorm', 'softmax']));
    for (const r of withCases) for (const f of refuseCases(r)) expect(testRefusal(r, f), `${r.name} ${f}`).toEqual([]);
  });
});

describe('near-miss ranking', () => {
  it('closest first; a lone first line is hidden by default, and so is a miss inside another rule\'s site', async () => {
    const { rankNearMisses } = await import('../../src/match/why-not.js');
    const miss = (rule: string, line: number, matched: number, of: number, constraint = false) => ({ rule, file: 'm.py', line, col: 1, owner: '', reason: 'r', matched, of, ...(constraint ? { constraint } : {}) });
    const misses = [miss('linear_bn', 3, 1, 2), miss('rmsnorm', 9, 6, 7), miss('softmax', 20, 1, 1, true), miss('variant', 30, 5, 7), miss('attention', 40, 2, 3)];
    const close = rankNearMisses(misses, 'close', [{ file: 'm.py', lines: [29, 31] }]);
    expect(close.shown.map((n) => n.rule)).toEqual(['softmax', 'rmsnorm', 'attention']);
    expect(close.hidden).toBe(2);
    expect(rankNearMisses(misses, 'all').shown.map((n) => n.rule)).toEqual(['softmax', 'rmsnorm', 'variant', 'attention', 'linear_bn']);
  });
});
