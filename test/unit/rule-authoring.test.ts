// What a rule writer gets wrong and adopt must catch: a placeholder whose text regroups in the
// template, a pattern line nothing uses, a kernel call without the `_adopt is not None` guard,
// refuse cases beside a rule in any folder, example tolerances, and what `rules check` reports.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { placed, ruleProblems } from '../../src/cli/rule-errors.js';
import { refuseCases, toleranceProblems } from '../../src/cli/rules-test.js';
import { loadRuleFiles, parseRules, RuleError } from '../../src/match/rule.js';
import { runRewrite } from '../../src/pipeline/index.js';
import { grouped, placeholderContexts } from '../../src/synth/grouping.js';
import { tempProject } from '../helpers/ir.js';

function errorOf(f: () => unknown): RuleError {
  try { f(); } catch (e) { if (e instanceof RuleError) return e; throw e; }
  throw new Error('no error');
}

const scaled = (template: string) => `rule scaled_softmax
  title "softmax(s / c)"
  match
    d = div($s, $c)
    y = softmax(d, ...)
  where
    last_dim(y)
    single_use(d)
  rewrite expr y
    guard "_adopt is not None and _adopt.enabled('softmax')"
    "${template}"
  kernel cpu native "adopt_kernels.softmax"
`;

const model = `import torch
import torch.nn.functional as F


def f(s, m, c):
    return F.softmax((s + m) / (c * 2), dim=-1)
`;

function rewriteWith(rule: string): string {
  const dir = tempProject({ 'm.py': model, 'r.rule': rule });
  const run = runRewrite([join(dir, 'm.py')], { rules: join(dir, 'r.rule'), builtinRules: false });
  expect(run.sites.map((s) => s.decision)).toEqual(['rewritten']);
  return run.files[0].rewritten;
}

describe('placeholders keep the grouping of their text', () => {
  it('an operand of an operator, and the object of a method call, are parenthesized when looser', () => {
    expect(rewriteWith(scaled('_adopt.softmax({s} / {c}, dim={y.dim}{,y.dtype})'))).toContain('_adopt.softmax((s + m) / (c * 2), dim=-1)');
    expect(rewriteWith(scaled('_adopt.softmax({s}.float() * -{c}, dim=-1)'))).toContain('_adopt.softmax((s + m).float() * -(c * 2), dim=-1)');
  });

  it('an argument, a keyword value or a list element is written as is', () => {
    expect(rewriteWith(scaled('_adopt.softmax(torch.div({s}, [{c}][0]), dim={y.dim})'))).toContain('_adopt.softmax(torch.div(s + m, [c * 2][0]), dim=-1)');
  });

  it('the precedence each place needs, read from the parsed template', () => {
    const re = /\{(\w+)\}/g;
    const need = (tpl: string) => placeholderContexts(tpl, re, () => 'name');
    expect(need('{a} / {b}')).toEqual([11, 12]);
    expect(need('{a} ** {b}')).toEqual([14, 12]);
    expect(need('{a} < {b}')).toEqual([6, 6]);
    expect(need('not {a}')).toEqual([4]);
    expect(need('{a}[0] + f({b}, k={c})')).toEqual([15, undefined, undefined]);
    expect(need('{a} if {b} else {c}')).toEqual([2, 2, 1]);
    expect(need('f({a}')).toEqual([]);
    expect(grouped('a - b', 11)).toBe('(a - b)');
    expect(grouped('a * b', 11)).toBe('a * b');
    expect(grouped('a * b', 12)).toBe('(a * b)');
    expect(grouped('-a', 14)).toBe('(-a)');
    expect(grouped('x < y', 6)).toBe('(x < y)');
    expect(grouped('a, b', undefined)).toBe('a, b');
  });
});

const silu = (match: string, rewrite = '"torch.nn.functional.silu({x})"') => `rule my_silu
  title "x * sigmoid(x)"
  match
${match}
  rewrite expr m
    ${rewrite}
  kernel cpu torch "torch.nn.functional.silu"
  example "before.py" "after.py" model "M" shapes (2, 3)
`;

describe('rules adopt refuses when loaded', () => {
  it('a pattern line whose value no later line uses, and which is not the result', () => {
    const e = errorOf(() => parseRules(silu('    s = sigmoid($x)\n    m = mul($x, $x)'), 'n.rule'));
    expect(e.message).toMatch(/^n\.rule:4:5: error: no later pattern line uses 's', and it is not the match's result/);
    expect(parseRules(silu('    s = sigmoid($x)\n    m = mul($x, s)'), 'n.rule')).toHaveLength(1);
  });

  it('a torch kernel naming something outside torch says so', () => {
    const e = errorOf(() => parseRules(silu('    s = sigmoid($x)\n    m = mul($x, s)').replace('"torch.nn.functional.silu"\n', '"numpy.tanh"\n'), 't.rule'));
    expect(e.message).toMatch(/^t\.rule:8:3: error: kernel cpu torch "numpy\.tanh": a 'torch' kernel names a function of torch itself/);
  });
});

describe('adopt rules check', () => {
  const problems = (rule: string) => {
    const dir = tempProject({ 'r.rule': rule, 'before.py': '', 'after.py': '' });
    return ruleProblems(loadRuleFiles([join(dir, 'r.rule')])[0], { examples: true }).map((d) => `${d.line}:${d.col}: ${d.severity}: ${d.message}`);
  };
  const ok = silu('    s = sigmoid($x)\n    m = mul($x, s)');

  it('reports what rules test rejects as errors and what the language does not offer as warnings', () => {
    expect(problems(ok)).toEqual([]);
    expect(problems(ok.replace(/ {2}example.*\n/, ''))).toEqual([expect.stringMatching(/^1:1: error: rule my_silu has no examples/)]);
    expect(problems(ok.replace('(2, 3)', '(2, 3) dtype fp64'))).toEqual([expect.stringMatching(/^9:3: warning: rule my_silu: example dtype 'fp64' is not one the rule language offers/)]);
    expect(problems(ok.replace('(2, 3)', '(2, 3) dtype fp8'))).toEqual([expect.stringMatching(/^9:3: error: rule my_silu: example dtype 'fp8' is not one of fp32, fp16, bf16/)]);
    expect(problems(ok.replace('kernel cpu', 'kernel gpu'))).toEqual([expect.stringMatching(/^8:3: warning: rule my_silu: kernel target 'gpu' is not a device/)]);
    const wrongKernel = ok.replace('"torch.nn.functional.silu({x})"', '"_adopt.rms_norm({x}, None, 1e-6)"').replace('rewrite expr m\n', 'rewrite expr m\n    guard "_adopt is not None"\n')
      .replace('kernel cpu torch "torch.nn.functional.silu"', 'kernel cpu native "adopt_kernels.softmax"');
    expect(problems(wrongKernel)).toEqual([expect.stringMatching(/^9:3: error: rule my_silu: the kernel line names adopt_kernels\.softmax, but the rewrite calls _adopt\.rms_norm/)]);
  });
});

describe('refuse cases', () => {
  const rule = (name: string) => silu('    s = sigmoid($x)\n    m = mul($x, s)').replace('my_silu', name);
  const names = (files: string[]) => files.map((f) => f.split('/').slice(-2).join('/'));

  it('are found beside a rule in a folder of any name; with several rules, in refuse/NAME/', () => {
    const one = tempProject({ 'mine/a.rule': rule('first'), 'mine/refuse/x.py': '', 'mine/refuse/first/y.py': '' });
    expect(names(refuseCases(loadRuleFiles([join(one, 'mine')])[0]))).toEqual(['refuse/x.py', 'first/y.py']);

    const two = tempProject({ 'mine/a.rule': rule('first'), 'mine/b.rule': rule('second'), 'mine/refuse/x.py': '', 'mine/refuse/second/y.py': '' });
    const warnings: string[] = [];
    const [first, second] = loadRuleFiles([join(two, 'mine')]);
    expect(refuseCases(first, (m) => warnings.push(m))).toEqual([]);
    expect(names(refuseCases(second, (m) => warnings.push(m)))).toEqual(['second/y.py']);
    expect(warnings[0]).toMatch(/1 refuse case\(s\) not run: the rule files beside it define first, second; put each rule's cases in .*refuse\/NAME\//);
  });
});

describe('example tolerances', () => {
  it('an error passes within atol or within rtol, and fails over both', () => {
    const check = { max_abs: 3e-4, max_rel: 1e-4 };
    expect(toleranceProblems(check, { atol: 1e-3, rtol: 1e-6 })).toEqual([]);
    expect(toleranceProblems(check, { atol: 1e-6, rtol: 1e-3 })).toEqual([]);
    expect(toleranceProblems(check, { atol: 1e-6, rtol: 1e-6 })).toEqual([expect.stringMatching(/max abs error 0\.000300 is over the example's atol 0\.000001, and the relative error 0\.000100 over its rtol 0\.000001/)]);
  });
});

describe('messages in the rule writer\'s words, at the place they name', () => {
  const ok = silu('    s = sigmoid($x)\n    m = mul($x, s)');
  const place = (text: string) => {
    const dir = tempProject({ 'r.rule': text });
    return placed(errorOf(() => loadRuleFiles([join(dir, 'r.rule')]))).map((d) => `${d.line}:${d.col}: ${d.message}`);
  };

  it('a tab in the indentation is named at its line', () => {
    expect(place(ok.replace('    s = sigmoid', '\t\ts = sigmoid'))).toEqual(['4:1: a tab in the indentation: rule files are indented with spaces, not tabs']);
  });

  it('a line indented deeper than its block', () => {
    expect(place(ok.replace('    m = mul', '     m = mul'))).toEqual([expect.stringMatching(/^5:\d+: cannot parse the rule: this line is indented deeper than the line above it, which opens no block/)]);
  });

  it('a rewrite target and an accessor are placed at the name', () => {
    expect(place(ok.replace('rewrite expr m', 'rewrite expr z'))).toEqual([expect.stringMatching(/^6:16: rewrite expr names 'z'/)]);
    expect(place(ok.replace('silu({x})', 'silu({m.dimm})'))).toEqual([expect.stringMatching(/^7:31: rule my_silu: \{m\.dimm\}: no template accessor 'dimm'/)]);
  });

  it('a template that is not Python is quoted as written', () => {
    const dir = tempProject({ 'r.rule': ok.replace('silu({x})', 'silu({x}') });
    expect(ruleProblems(loadRuleFiles([join(dir, 'r.rule')])[0], { examples: false }).map((d) => d.message))
      .toEqual(['rule my_silu: the rewrite expression would not be Python: torch.nn.functional.silu({x}']);
  });
});

describe('a pattern without `...` takes only the arguments it names', () => {
  const strict = (line: string) => `rule plain_softmax
  title "softmax(s)"
  match
    ${line}
  where
    last_dim(y)
  rewrite expr y
    guard "_adopt is not None and _adopt.enabled('softmax')"
    "_adopt.softmax({x}, dim={y.dim})"
  kernel cpu native "adopt_kernels.softmax"
`;
  const code = (call: string) => `import torch\nimport torch.nn.functional as F\n\n\ndef f(s):\n    return ${call}\n`;
  const run = (line: string, call: string) => {
    const dir = tempProject({ 'm.py': code(call), 'r.rule': strict(line) });
    return runRewrite([join(dir, 'm.py')], { rules: join(dir, 'r.rule'), builtinRules: false });
  };

  it('a keyword the pattern does not name (`dtype=`) is a near miss that names it, not a rewrite that drops it', () => {
    const r = run('y = softmax($x, dim=-1)', 'F.softmax(s, dim=-1, dtype=torch.float64)');
    expect(r.sites.map((s) => s.decision)).not.toContain('rewritten');
    expect(r.files.every((f) => f.rewritten === f.original)).toBe(true);
    expect(JSON.stringify(r.nearMisses)).toContain('softmax passes dtype=, which the pattern does not name (`...` allows further arguments)');
  });

  it('the same call without it is rewritten, and `...` takes it', () => {
    expect(run('y = softmax($x, dim=-1)', 'F.softmax(s, dim=-1)').sites.map((s) => s.decision)).toEqual(['rewritten']);
    expect(run('y = softmax($x, dim=-1, ...)', 'F.softmax(s, dim=-1, dtype=torch.float64)').sites.map((s) => s.decision)).toEqual(['rewritten']);
  });
});

describe('a rewrite is a fixed point whatever its rule\'s guard says', () => {
  it('a guard with no `_adopt.enabled(...)` (only `_adopt is not None`): the second run finds its own code already rewritten', () => {
    const rule = `rule plain_softmax
  title "softmax(s)"
  match
    y = softmax($x, dim=-1)
  where
    last_dim(y)
  rewrite expr y
    guard "_adopt is not None"
    "_adopt.softmax({x}, dim=-1)"
  kernel cpu native "adopt_kernels.softmax"
`;
    const dir = tempProject({ 'm.py': 'import torch\nimport torch.nn.functional as F\n\n\ndef f(s):\n    return F.softmax(s, dim=-1)\n', 'r.rule': rule });
    const once = runRewrite([join(dir, 'm.py')], { rules: join(dir, 'r.rule'), builtinRules: false });
    expect(once.sites.map((s) => s.decision)).toEqual(['rewritten']);
    const again = tempProject({ 'm.py': once.files[0].rewritten, 'r.rule': rule });
    const twice = runRewrite([join(again, 'm.py')], { rules: join(again, 'r.rule'), builtinRules: false });
    expect(twice.sites.map((s) => s.decision).filter((d) => d === 'rewritten')).toEqual([]);
    expect(twice.sites.map((s) => s.reason)).toContain('already rewritten (inside an adopt guard)');
    expect(twice.files.every((f) => f.rewritten === f.original)).toBe(true);
  });
});
