// A pattern line whose callee names nothing the analysis produces loads and never matches: a
// misspelt callee is a warning at rule-file:line:col with the known name it is close to, for
// `rules check` and for `rewrite --rules`; names a project may define itself are left alone.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzePaths } from '../../src/analysis/analyze.js';
import { OP_NAMESPACES } from '../../src/analysis/canon.js';
import { checkTemplates, ruleProblems } from '../../src/cli/rule-errors.js';
import { calleeProblem, calleeWarnings, knownNames, nearNames, torchNames } from '../../src/match/callee-names.js';
import { loadRuleFile, loadRules, type Rule } from '../../src/match/rule.js';
import type { Stmt } from '../../src/dsl/ir.js';
import { repoRoot } from '../helpers/cli.js';
import { modelsDir } from '../helpers/fixtures.js';
import { tempProject } from '../helpers/ir.js';

const ruleText = (lines: string[]) => `rule my_rule
  title "probe"
  match
${lines.map((l) => `    ${l}`).join('\n')}
  rewrite expr y
    "torch.nn.functional.gelu({x})"
`;

function loaded(lines: string[]): Rule {
  const file = join(tempProject({ 'my.rule': ruleText(lines) }), 'my.rule');
  return loadRuleFile(file)[0];
}

describe('a misspelt callee in a pattern', () => {
  it('is a warning at the callee, with the known name it is close to', () => {
    const r = loaded(['y = sofmax($x, ...)']);
    const [w, ...more] = calleeWarnings(r);
    expect(more).toEqual([]);
    expect(w).toMatchObject({ severity: 'warning', file: r.file, line: 4, col: 9 });
    expect(w.message).toMatch(/^rule my_rule: pattern line 'y': 'sofmax' names no op the analysis produces nor a class of torch\.nn or torch\.optim \(did you mean softmax\?\)/);
    // `rules check` reports it, and the rule is still ok
    expect(ruleProblems(r, { examples: false })).toEqual([w]);
  });

  it('a module class, an alternative and a qualified torch.nn name, each at its own column', () => {
    const r = loaded(['l = Linear|Lienar($x)', 'z = torch.nn.LayerNrom(l)', 'y = gelu(z, ...)']);
    const ws = calleeWarnings(r);
    expect(ws.map((w) => [w.line, w.col])).toEqual([[4, 16], [5, 9]]);
    expect(ws[0].message).toMatch(/'Lienar' names no op the analysis produces nor a class of torch\.nn or torch\.optim \(did you mean Linear\?\): as written it matches only a class of your own named Lienar/);
    expect(ws[1].message).toMatch(/torch\.nn has no class 'LayerNrom' \(did you mean torch\.nn\.LayerNorm\?\)/);
  });

  it('a spelling the analysis reads under another name is said to never match, with what to write', () => {
    expect(calleeProblem('bmm')).toMatch(/'bmm' never matches: the analysis reads bmm as matmul, so write 'matmul'/);
    expect(calleeProblem('torch.softmax')).toMatch(/never matches: the analysis reads a call of torch\.softmax as the op softmax, so write 'softmax'/);
    expect(calleeProblem('F.sofmax')).toMatch(/so write 'sofmax' \(did you mean softmax\?\)/);
    expect(calleeProblem('half')).toMatch(/'half' never matches x\.half\(\): .* write 'to\(\$x, dtype=torch\.float16\)'/);
  });

  it('names a project may define are not warned about', () => {
    for (const name of [
      'my_rms_norm', '*Act*', 'ACT2FN[*]', 'transformers.activations.gelu', 'self.loss_function', 'get_activation',
      // a case variant or an extension of a torch name is a class of its own (transformers' Conv1D)
      'Conv1D', 'T5LayerNorm', 'GELUActivation', 'BatchNormAct2d', 'SwiGLU', 'relu6', 'quick_gelu', 'Layernorm',
      // known ones: ops, in-place forms, classes of torch.nn and torch.optim
      'softmax', 'Softmax', 'relu_', 'masked_fill_', 'getitem', 'to', 'erfc', 'elu', 'Linear', 'AdamW', 'torch.nn.Linear', 'nn.Dropout',
      // too short to guess at
      'lin', 'sfm',
    ]) expect([name, calleeProblem(name)]).toEqual([name, undefined]);
  });

  it('a near name is one edit away (two for long names), case aside, and not a variant of the name', () => {
    expect(nearNames('Lienar', ['Linear', 'LazyLinear'])).toEqual(['Linear']);
    expect(nearNames('matmull', ['matmul'])).toEqual(['matmul']);
    expect(nearNames('relu6', ['relu'])).toEqual([]);
    expect(nearNames('CrossEntropyLos', ['CrossEntropyLoss'])).toEqual(['CrossEntropyLoss']);
    expect(nearNames('CrosEntropyLos', ['CrossEntropyLoss'])).toEqual(['CrossEntropyLoss']);
    expect(nearNames('Layr', ['Layer'])).toEqual(['Layer']);
    expect(nearNames('Conv1D', ['Conv1d', 'Conv2d'])).toEqual([]);
  });

  it('rewrite --rules uses the rule and writes the warning; an error still refuses', () => {
    const r = loaded(['y = sofmax($x, ...)']);
    const said: string[] = [];
    expect(checkTemplates([r], () => true, (l) => said.push(l))).toEqual([r]);
    expect(said).toEqual([expect.stringMatching(new RegExp(`^${r.file.replace(/[.\\]/g, '\\$&')}:4:9: warning: rule my_rule: pattern line 'y': 'sofmax' names no op`))]);
  });

  it('no rule of the library is warned about', () => {
    expect(loadRules().flatMap((r) => calleeWarnings(r))).toEqual([]);
  });
});

describe('the names a pattern may call', () => {
  it('every op the analysis produces from the model fixtures is one no callee warning is given for', () => {
    const { program } = analyzePaths(readdirSync(modelsDir).map((f) => join(modelsDir, f)));
    const ops = new Set<string>();
    const walk = (ss: Stmt[]): void => {
      for (const s of ss) {
        if (s.k === 'op' && s.kind === 'op') ops.add(s.callee);
        else if (s.k === 'if') { walk(s.then); walk(s.else); } else if (s.k === 'for') walk(s.body);
      }
    };
    for (const f of program.files) for (const m of [...f.modules.flatMap((x) => x.methods), ...f.functions]) walk(m.body);
    expect(ops.size).toBeGreaterThan(100);
    expect([...ops].filter((op) => calleeProblem(op) !== undefined)).toEqual([]);
    // the ops the lowering writes for Python syntax are known, not merely far from a known name
    for (const op of ['getitem', 'getattr', 'ifexp', 'to', 'add', 'matmul', 'lt']) expect(knownNames().ops.has(op)).toBe(true);
  });

  it('the torch names are listed for the namespaces the analysis reads as ops', () => {
    expect(Object.keys(torchNames().functions).sort()).toEqual([...OP_NAMESPACES].sort());
    expect(readFileSync(join(repoRoot, 'scripts/torch-names.py'), 'utf8')).toContain(`OP_NAMESPACES = ${JSON.stringify(OP_NAMESPACES).replace(/,/g, ', ')}`);
    expect(torchNames().modules['torch.nn']).toContain('Linear');
  });
});
