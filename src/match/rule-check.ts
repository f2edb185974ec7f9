// What a parsed rule must satisfy before it is used: every name it uses is bound (pattern
// references to earlier lines, constraint arguments, template placeholders), every constraint is
// in the registry with arguments of the right kinds, every kernel and guard switch is in the
// kernel registry, and no line uses a form adopt does not apply.
import { BINARY_OPS, COMPARE_OPS, UNARY_OPS } from '../analysis/canon.js';
import { constraintProblem } from './constraints.js';
import { kernelSignatures, registryProblems } from './kernel-registry.js';
import { fail, type PatVal, type Rewrite, type Rule } from './rule-ir.js';
import { kernelArgumentProblems } from './rule-template.js';
import { templateAccessorProblems } from './template-accessors.js';

export function validateRule(r: Rule): void {
  if (r.pattern.length === 0) fail(r.file, r.line, 1, `rule ${r.name} has no match block`);
  const { ops, metas } = checkPattern(r);
  for (const c of r.where) {
    const problem = constraintProblem(c, ops, metas);
    if (problem) fail(r.file, c.line, c.col, problem);
  }
  if (r.tune.length) fail(r.file, r.line, 1, `rule ${r.name}: 'tune' lines are no longer read; a kernel's schedule space is part of the kernel registry (native/adopt_kernels/kernels/)`);
  for (const k of r.kernels) {
    // `torch`: the rewrite turns on torch's own fused implementation (`fused=True`)
    if (k.library === 'torch' && /^torch(\.|$)/.test(k.callee)) continue;
    if (k.library === 'torch') {
      fail(r.file, k.line, 3, `kernel ${k.target} torch "${k.callee}": a 'torch' kernel names a function of torch itself ("torch.…"); for adopt's own kernels write 'kernel ${k.target} native "adopt_kernels.NAME"'`);
    }
    if (k.library !== 'native') {
      fail(r.file, k.line, 3, `kernel library '${k.library}' is not supported: a rewrite calls adopt_kernels (native) or torch itself, and adopt_kernels chooses the implementation per device; remove this line or write 'kernel ${k.target} native "adopt_kernels.NAME"'`);
    }
    const problem = registryProblems([{ library: k.library, callee: String(k.callee) }], [])[0];
    if (problem) fail(r.file, k.line, 3, `rule ${r.name}: ${problem}`);
  }
  const rw = r.rewrite;
  if (rw && r.detect !== undefined) fail(r.file, r.line, 1, `rule ${r.name} has both a rewrite and 'detect': 'detect' gives the reason a rule without a rewrite lists its sites only; remove one`);
  if (!rw) { checkDataflow(r); return; }
  // refused first, with the reason: what else the lines below say is moot
  if (rw.kind === 'init') {
    fail(r.file, rw.line, 3, `'rewrite init' is not supported (adopt never applied it): rewrite the forward code with 'rewrite expr NAME' or 'rewrite stmts'; a module the kernel needs is passed as {NAME.module}`);
  }
  const problems = registryProblems([], [...rw.guards, ...rw.code]);
  if (problems.length) fail(r.file, rw.line, 3, `rule ${r.name}: ${problems.join('; ')}`);
  const unguarded = unguardedKernelCall(rw.guards, rw.code);
  if (unguarded) fail(r.file, rw.line, 3, `rule ${r.name}: ${unguarded}`);
  const argProblems = kernelArgumentProblems(r, kernelSignatures());
  if (argProblems.length) fail(r.file, rw.line, 3, argProblems.join('; '));
  for (const x of rw.refused) {
    const why = x.kind === 'import'
      ? `the rewrite imports adopt_kernels as _adopt itself; call what you need through _adopt`
      : `write the expression in the template itself`;
    fail(r.file, x.line, 5, `'${x.kind}' lines in a rewrite are not supported (adopt never applied them): ${why}`);
  }
  if (rw.kind === 'expr' && (!rw.target || !ops.has(rw.target))) {
    fail(r.file, rw.line, 1, `rewrite ${rw.kind} names '${rw.target}', which is not a pattern name`);
  }
  if (rw.kind === 'callee') checkCalleeTarget(r, rw, metas);
  checkDataflow(r);
  const known = (name: string) => ops.has(name) || metas.has(name);
  const check = (tpl: string, what: string) => {
    for (const m of tpl.matchAll(/\{(?:\?(?=[A-Za-z_][A-Za-z0-9_]*:))?,?(?:[A-Za-z_][A-Za-z0-9_]*=)?([A-Za-z_][A-Za-z0-9_]*)(\.[A-Za-z_0-9]+|![A-Za-z_][A-Za-z0-9_]*|:[^}]*)?(?:\|[^}]*)?\}/g)) {
      // `{original}` and `{indent}` were once accepted here, but no renderer fills them: every site
      // then failed to rewrite with "cannot express {original}"
      const none = m[1] === 'original' || m[1] === 'indent'
        ? `: adopt fills no {${m[1]}} placeholder (the original code runs by itself where the guard fails, and a statements rewrite is indented as the code it replaces)`
        : '';
      if (!known(m[1])) fail(r.file, rw.line, 1, `${what} uses {${m[1]}${m[2] ?? ''}}, but '${m[1]}' is not bound by the pattern (unbound metavariable)${none}`);
    }
  };
  for (const m of rw.noneAbsent) if (!metas.has(m)) fail(r.file, rw.line, 1, `none_means_absent names $${m}, which the pattern does not bind`);
  rw.guards.forEach((g) => check(g, 'guard'));
  rw.code.forEach((c) => check(c, 'rewrite'));
  const own = ownResultRead(rw);
  if (own) fail(r.file, rw.line, 1, `rule ${r.name}: ${own}`);
  const flow = controlFlowIn(rw);
  if (flow) fail(r.file, rw.line, 1, `rule ${r.name}: ${flow}`);
  const accessors = [...rw.guards, ...rw.code].flatMap((t) => templateAccessorProblems(t, (n) => ops.has(n)));
  if (accessors.length) fail(r.file, rw.line, 1, `rule ${r.name}: ${accessors.join('; ')}`);
}

/** Ops the analysis makes of Python syntax other than a call (`a + b`, `x[i]`, `a if c else b`):
 *  a line matching them has no function whose expression a callee rewrite could replace. */
const NOT_CALLS = new Set([
  ...Object.values(BINARY_OPS), ...Object.values(UNARY_OPS), ...Object.values(COMPARE_OPS),
  'binop', 'unary', 'compare', 'and', 'or', 'not', 'ifexp', 'getitem', 'getattr', 'setitem', 'setattr', 'written_through_view',
]);

/** `rewrite callee T`: T is a pattern line whose every form is a call. A line that may match an
 *  operator (`add` is also `a + b`) would leave sites with no callee to replace, refused one by one
 *  at synthesis, where the rule writer meant `rewrite expr`. */
function checkCalleeTarget(r: Rule, rw: Rewrite, metas: Set<string>): void {
  const col = rw.targetCol ?? 1;
  const line = r.pattern.find((p) => p.name === rw.target);
  if (!line) {
    const what = metas.has(rw.target ?? '') ? `a metavariable ($${rw.target}), not a pattern line` : 'not a pattern name';
    fail(r.file, rw.line, col, `rewrite callee names '${rw.target}', which is ${what}: 'rewrite callee NAME' replaces the function that pattern line NAME calls`);
  }
  const operator = [line.callees, ...(line.alts ?? []).map((f) => f.callees)].flat().find((c) => NOT_CALLS.has(c));
  if (operator) {
    fail(r.file, rw.line, col, `rewrite callee names '${line.name}', but pattern line '${line.name}' (line ${line.line}) matches '${operator}', which code also writes without a call (an operator, a subscript or other syntax), where there is no callee to replace: 'rewrite callee' takes a line that is always a call; use 'rewrite expr ${line.name}' to replace the whole expression`);
  }
}

/** In `rewrite expr T` (or `rewrite callee T`), the first placeholder that reads T's own value
 *  (`{T}`, `{T|default}`, `{,kw=T}`, `{,kw=x!T}`), as a problem. The expression replaced computes
 *  that value (or, for a callee, the call it is part of), so where the guard and the kernel call
 *  run it does not exist yet: the renderer would write the name T is assigned to, read before it
 *  is assigned (or a stale value). Parts of T (`{T.dim}`), its presence (`{?T:...}`, `{T.absent}`)
 *  read the matched call and are fine; `{T} = ...` belongs to `rewrite stmts`, whose template
 *  assigns the results. */
function ownResultRead(rw: Rewrite): string | undefined {
  if ((rw.kind !== 'expr' && rw.kind !== 'callee') || !rw.target) return undefined;
  const t = rw.target;
  for (const tpl of [...rw.guards, ...rw.code]) {
    for (const m of tpl.matchAll(/\{(?!\?),?(?:[A-Za-z_]\w*=)?([A-Za-z_]\w*)(\.[A-Za-z_]\w*)?(?:!([A-Za-z_]\w*))?(?:\|[^}]*)?\}/g)) {
      if ((m[1] === t && m[2] === undefined) || m[3] === t) {
        return `${m[0]} reads the value of '${t}', ${rw.kind === 'callee' ? `the call whose function 'rewrite callee ${t}' replaces` : `the expression 'rewrite expr ${t}' replaces`}: it is not computed yet where the ${rw.guards.includes(tpl) ? 'guard' : 'replacement'} runs. Name the inputs instead ({x} for $x, an earlier line's name, a part such as {${t}.dim}); a template that assigns {${t}} is a 'rewrite stmts' one`;
      }
    }
  }
  return undefined;
}

/** A template or guard that would change what the enclosing function is: `await` (a forward is
 *  no coroutine), `yield` (it would become a generator), and in an expression rewrite a `;`
 *  (several statements where one expression goes). Each parses, so the re-parse of the output
 *  cannot catch them. String literals are left out of the search. */
function controlFlowIn(rw: Rewrite): string | undefined {
  for (const tpl of [...rw.guards, ...rw.code]) {
    const bare = tpl.replace(/'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"/g, '""');
    const word = /(?<![\w.])(await|yield)(?!\w)/.exec(bare)?.[1];
    if (word) return `${JSON.stringify(tpl)} uses '${word}', which would make the rewritten function ${word === 'await' ? 'a coroutine (or not compile)' : 'a generator'}`;
    if (rw.kind !== 'stmts' && bare.includes(';')) return `${JSON.stringify(tpl)} holds ';': an expression rewrite replaces one expression with one expression (a 'rewrite stmts' template writes statements)`;
  }
  return undefined;
}

/** Why a rewrite that reads `_adopt` could raise where adopt_kernels is not installed (the file
 *  then binds `_adopt = None`): the guards are joined with `and` and run in order, so the first
 *  of them must begin with `_adopt is not None` for every later `_adopt.` to be safe. */
function unguardedKernelCall(guards: string[], code: string[]): string | undefined {
  const reads = [...guards, ...code].some((t) => /(?<![\w.])_adopt\b/.test(t));
  if (!reads) return undefined;
  const first = guards[0]?.split(/\s+and\s+/)[0]?.trim().replace(/^\((.*)\)$/, '$1').trim();
  if (first === '_adopt is not None') return undefined;
  return `the rewrite uses _adopt, which is None where adopt_kernels is not installed: its first guard must begin with '_adopt is not None' (guard "_adopt is not None and _adopt.enabled('SWITCH')")`;
}

/** The pattern's line names and metavariables; each reference is to an earlier line. */
function checkPattern(r: Rule): { ops: Set<string>; metas: Set<string> } {
  const ops = new Set<string>();
  const metas = new Set<string>();
  for (const p of r.pattern) {
    if (ops.has(p.name)) fail(r.file, p.line, p.col, `pattern name '${p.name}' is bound twice`);
    if (p.ctor && p.alts) fail(r.file, p.line, p.col, `pattern line '${p.name}' has both a constructor form and 'or' forms`);
    const visit = (v: PatVal | undefined): void => {
      if (v?.k === 'ref' && !ops.has(v.name)) fail(r.file, p.line, p.col, `'${v.name}' is not bound by an earlier pattern line (use $${v.name} for a metavariable)`);
      if (v?.k === 'meta') metas.add(v.name);
      if (v?.k === 'tuple') v.items.forEach(visit);
    };
    for (const a of [...(p.ctor ?? []), ...p.args, ...(p.alts ?? []).flatMap((f) => f.args)]) visit(a.val);
    ops.add(p.name);
  }
  return { ops, metas };
}

/** Each pattern line feeds the match: a later line uses its value, or it is the match's result
 *  (the line `rewrite expr` replaces, a line a `rewrite stmts` template assigns, the last line
 *  of a rule without a rewrite). A line nothing uses constrains nothing: the rest of the pattern
 *  then matches code that does not compute what the rewrite assumes. */
function checkDataflow(r: Rule): void {
  const used = new Set<string>();
  const visit = (v: PatVal | undefined): void => {
    if (v?.k === 'ref') used.add(v.name);
    if (v?.k === 'tuple') v.items.forEach(visit);
  };
  for (const p of r.pattern) for (const a of [...(p.ctor ?? []), ...p.args, ...(p.alts ?? []).flatMap((f) => f.args)]) visit(a.val);
  const results = new Set<string>();
  const rw = r.rewrite;
  if (rw?.target) results.add(rw.target);
  else if (rw) for (const c of rw.code) for (const m of c.matchAll(/\{([A-Za-z_]\w*)\}/g)) results.add(m[1]);
  else if (r.pattern.length) results.add(r.pattern[r.pattern.length - 1].name);
  for (const p of r.pattern) {
    if (used.has(p.name) || results.has(p.name)) continue;
    fail(r.file, p.line, p.col, `no later pattern line uses '${p.name}', and it is not the match's result: each line must feed a later one (use '${p.name}' as an argument), or be what the rewrite replaces`);
  }
}
