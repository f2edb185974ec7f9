// Rule files: parsed with grammar/rules.ohm into plain data. Loading a rule runs no code from it;
// every name a rule uses is checked, and errors name rule-file:line:col.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import * as ohm from 'ohm-js';
import { AdoptError, type Diagnostic } from '../diag.js';
import type { Const } from '../dsl/ir.js';
import { addSemantics as addDslSemantics, grammarPath, markIndentation } from '../dsl/parse.js';
import { registryProblems } from './kernel-registry.js';
import { templateAccessorProblems } from './template-accessors.js';

export type PatVal =
  | { k: 'meta'; name: string }
  | { k: 'any' }
  | { k: 'const'; v: Const }
  | { k: 'name'; path: string }
  | { k: 'ref'; name: string }
  /** `(a, b)`: a tuple or list of exactly these items (`cat((n, x1), dim=-1)`). */
  | { k: 'tuple'; items: PatVal[] };

export interface PatArg { kw?: string; rest?: boolean; val?: PatVal }

export interface PatOp {
  name: string;
  /** Alternatives: a canonical op (`softmax`), a module class (`Dropout`, `torch.nn.Linear`), a
   *  table lookup (`ACT2FN[*]`), or a resolved function (`torch.optim.AdamW`). */
  callees: string[];
  /** With `Type(ctor...)(call...)`: constraints on the constructor in `__init__`. */
  ctor?: PatArg[];
  args: PatArg[];
  /** Other forms of the same line (`matmul(p, $v) or matmul($v, p)`), tried after the first;
   *  which one matched is `State.forms`. */
  alts?: { callees: string[]; args: PatArg[] }[];
  optional: boolean;
  line: number;
  col: number;
}

export interface Constraint { name: string; args: PatVal[]; line: number; col: number }

export interface Rewrite {
  kind: 'expr' | 'stmts' | 'init';
  target?: string;
  guards: string[];
  imports: string[];
  binds: [string, string][];
  code: string[];
  /** Metavariables whose value None makes the kernel call what it is with the lines binding
   *  them absent: `if x is not None: <those lines>` then needs no guard. */
  noneAbsent: string[];
  line: number;
}

export interface Kernel { target: string; library: string; callee: string; requires: string[] }
export interface Example { before: string; after: string; shapes: number[]; dtype: string; atol: number; rtol: number; model?: string }

export interface Rule {
  name: string;
  file: string;
  line: number;
  title: string;
  priority: number;
  /** Adopter's benchmark rule this one is scored against, if any. */
  bench?: string;
  pattern: PatOp[];
  where: Constraint[];
  rewrite?: Rewrite;
  kernels: Kernel[];
  tune: [string, Const[]][];
  examples: Example[];
}

/** Constraints a rule may use in `where` (implemented in constraints.ts). */
export const CONSTRAINTS = new Set(['single_use', 'last_dim', 'bias', 'same_scope', 'not_escaping', 'distinct', 'const', 'no_kw', 'vocab_projection', 'halves', 'together', 'needs', 'row_max', 'evens_odds', 'no_pair', 'transposed_by', 'apart']);

let grammar: ohm.Grammar | undefined;
let semantics: ohm.Semantics | undefined;

function load(): { g: ohm.Grammar; s: ohm.Semantics } {
  if (!grammar) {
    const ns = ohm.grammars(readFileSync(grammarPath('dsl.ohm'), 'utf8'));
    grammar = ohm.grammar(readFileSync(grammarPath('rules.ohm'), 'utf8'), ns);
    const base = ns.AdoptDSL.createSemantics();
    addDslSemantics(base);
    semantics = grammar.extendSemantics(base);
    addSemantics(semantics);
  }
  return { g: grammar, s: semantics! };
}

const metaLinesCache = new WeakMap<Rule, Map<string, string[]>>();

/** Metavariable → the pattern lines that mention it (in any form of the line, its constructor
 *  included). */
export function metaLines(rule: Rule): Map<string, string[]> {
  let out = metaLinesCache.get(rule);
  if (out) return out;
  out = new Map();
  const visit = (v: PatVal | undefined, line: string) => {
    if (v?.k === 'meta') out!.set(v.name, [...(out!.get(v.name) ?? []), line]);
    if (v?.k === 'tuple') v.items.forEach((x) => visit(x, line));
  };
  for (const p of rule.pattern) for (const a of [...p.args, ...(p.ctor ?? []), ...(p.alts ?? []).flatMap((x) => x.args)]) visit(a.val, p.name);
  metaLinesCache.set(rule, out);
  return out;
}

export class RuleError extends AdoptError {}

function positionOf(marked: string, index: number): { line: number; col: number } {
  const before = marked.slice(0, index);
  const line = before.split('\n').length;
  const col = before.slice(before.lastIndexOf('\n') + 1).replace(/[\u27EA\u27EB]/g, '').length + 1;
  return { line, col };
}

function fail(file: string, line: number, col: number, message: string): never {
  const d: Diagnostic = { severity: 'error', code: 'rule', file, line, col, message };
  throw new RuleError(`${file}:${line}:${col}: error: ${message}`, [d]);
}

export function parseRules(text: string, file: string): Rule[] {
  const { g, s } = load();
  const marked = markIndentation(text);
  const m = g.match(marked, 'RuleFile');
  if (m.failed()) {
    const pos = (m as unknown as { getRightmostFailurePosition(): number }).getRightmostFailurePosition();
    const { line, col } = positionOf(marked, pos);
    const expected = ((m as unknown as { shortMessage?: string }).shortMessage ?? m.message ?? '').replace(/^Line \d+, col \d+: /, '');
    fail(file, line, col, `cannot parse the rule: ${expected}`);
  }
  const rules = (s(m).rule() as Omit<Rule, 'file'>[]).map((r) => ({ ...r, file }));
  const pos = (idx: number) => positionOf(marked, idx);
  for (const r of rules) validate(r, pos);
  return rules;
}

/** Every name used must be bound: pattern refs to earlier ops, rewrite placeholders to ops,
 *  metavariables or binds. */
function validate(r: Rule, _pos: (i: number) => { line: number; col: number }): void {
  if (r.pattern.length === 0) fail(r.file, r.line, 1, `rule ${r.name} has no match block`);
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
  for (const c of r.where) {
    if (!CONSTRAINTS.has(c.name)) fail(r.file, c.line, c.col, `unknown constraint '${c.name}' (known: ${[...CONSTRAINTS].join(', ')})`);
    for (const a of c.args) {
      if (a.k === 'ref' && !ops.has(a.name)) fail(r.file, c.line, c.col, `'${a.name}' is not a pattern name`);
      if (a.k === 'meta' && !metas.has(a.name)) fail(r.file, c.line, c.col, `metavariable $${a.name} is not bound by the pattern`);
    }
  }
  if (r.tune.length) fail(r.file, r.line, 1, `rule ${r.name}: 'tune' lines are no longer read; a kernel's schedule space is part of the kernel registry (native/adopt_kernels/kernels/)`);
  const rw = r.rewrite;
  const problems = registryProblems(r.kernels.map((k) => ({ library: k.library, callee: String(k.callee) })), rw ? [...rw.guards, ...rw.code, ...rw.binds.map(([, t]) => t)] : []);
  if (problems.length) fail(r.file, r.line, 1, `rule ${r.name}: ${problems.join('; ')}`);
  if (!rw) return;
  if ((rw.kind === 'expr' || rw.kind === 'init') && (!rw.target || !ops.has(rw.target))) {
    fail(r.file, rw.line, 1, `rewrite ${rw.kind} names '${rw.target}', which is not a pattern name`);
  }
  const binds = new Set(rw.binds.map(([n]) => n));
  const known = (name: string) => ops.has(name) || metas.has(name) || binds.has(name) || name === 'original' || name === 'indent';
  const check = (tpl: string, what: string) => {
    for (const m of tpl.matchAll(/\{(?:\?(?=[A-Za-z_][A-Za-z0-9_]*:))?,?(?:[A-Za-z_][A-Za-z0-9_]*=)?([A-Za-z_][A-Za-z0-9_]*)(\.[A-Za-z_0-9]+|![A-Za-z_][A-Za-z0-9_]*|:[^}]*)?(?:\|[^}]*)?\}/g)) {
      if (!known(m[1])) fail(r.file, rw.line, 1, `${what} uses {${m[1]}${m[2] ?? ''}}, but '${m[1]}' is not bound by the pattern (unbound metavariable)`);
    }
  };
  for (const m of rw.noneAbsent) if (!metas.has(m)) fail(r.file, rw.line, 1, `none_means_absent names $${m}, which the pattern does not bind`);
  rw.guards.forEach((g) => check(g, 'guard'));
  rw.code.forEach((c) => check(c, 'rewrite'));
  rw.binds.forEach(([, t]) => check(t, 'bind'));
  const accessors = [...rw.guards, ...rw.code, ...rw.binds.map(([, t]) => t)].flatMap((t) => templateAccessorProblems(t, (n) => ops.has(n)));
  if (accessors.length) fail(r.file, rw.line, 1, `rule ${r.name}: ${accessors.join('; ')}`);
}

export function loadRuleFile(path: string): Rule[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    fail(path, 1, 1, `cannot read rule file: ${(e as Error).message}`);
  }
  return parseRules(text, path);
}

export function defaultRulesDir(): string {
  return grammarPath('../rules');
}

/** Loads rules from a directory or file, or picks library rules by name (comma-separated). */
export function loadRules(spec?: string): Rule[] {
  const dir = defaultRulesDir();
  const all = () => readdirSync(dir).filter((f) => f.endsWith('.rule')).sort().flatMap((f) => loadRuleFile(join(dir, f)));
  if (!spec) return all();
  let isPath = false;
  try { isPath = statSync(spec).isDirectory() || statSync(spec).isFile(); } catch { isPath = false; }
  if (isPath) {
    if (statSync(spec).isFile()) return loadRuleFile(spec);
    const files = readdirSync(spec).filter((f) => f.endsWith('.rule')).sort();
    if (!files.length) throw new AdoptError(`${spec}: error: no .rule files in this directory`);
    return files.flatMap((f) => loadRuleFile(join(spec, f)));
  }
  const library = all();
  const names = spec.split(',').map((s) => s.trim()).filter(Boolean);
  for (const n of names) {
    if (!library.some((r) => r.name === n)) {
      throw new AdoptError(`unknown rule '${n}' (rules: ${library.map((r) => r.name).join(', ')}; or give a .rule file or directory)`);
    }
  }
  return library.filter((r) => names.includes(r.name));
}

type N = ohm.Node;

function addSemantics(s: ohm.Semantics): void {
  const lineCol = (n: N) => {
    const src = n.source as unknown as { sourceString: string; startIdx: number };
    return positionOf(src.sourceString, src.startIdx);
  };
  s.addOperation('rule', {
    RuleFile(decls) { return decls.children.map((d: N) => d.rule()); },
    RuleDecl(_k, name, _i, items, _d) {
      const r: Omit<Rule, 'file'> = {
        name: name.sourceString, line: lineCol(this as unknown as N).line, title: '', priority: 50,
        pattern: [], where: [], kernels: [], tune: [], examples: [],
      };
      for (const it of items.children) {
        const v = it.rule() as { kind: string; value: unknown };
        switch (v.kind) {
          case 'title': r.title = v.value as string; break;
          case 'priority': r.priority = v.value as number; break;
          case 'bench': r.bench = v.value as string; break;
          case 'match': r.pattern.push(...(v.value as PatOp[])); break;
          case 'where': r.where.push(...(v.value as Constraint[])); break;
          case 'rewrite': r.rewrite = v.value as Rewrite; break;
          case 'kernel': r.kernels.push(v.value as Kernel); break;
          case 'tune': r.tune.push(v.value as [string, Const[]]); break;
          case 'example': r.examples.push(v.value as Example); break;
        }
      }
      return r;
    },
    RuleItem(x) { return x.rule(); },
    Title(_k, t) { return { kind: 'title', value: t.ir() }; },
    Priority(_k, n) { return { kind: 'priority', value: n.ir() }; },
    Bench(_k, n) { return { kind: 'bench', value: n.sourceString }; },
    Match(_k, _i, stmts, _d) { return { kind: 'match', value: stmts.children.map((c: N) => c.rule()) }; },
    PatStmt(name, _eq, first, second, ors, opt) {
      const { line, col } = lineCol(this as unknown as N);
      const a = first.rule() as { callees: string[]; args: PatArg[] };
      const op: PatOp = { name: name.sourceString, callees: a.callees, args: a.args, optional: opt.children.length > 0, line, col };
      if (second.children.length) {
        const b = second.children[0].rule() as { callees: string[]; args: PatArg[] };
        op.ctor = a.args;
        op.args = b.args;
      }
      if (ors.children.length) {
        op.alts = ors.children.map((c: N) => c.rule() as { callees: string[]; args: PatArg[] });
      }
      return op;
    },
    PatOr(_k, call) { return call.rule(); },
    PatCall(callee, _o, args, _c) {
      return { callees: callee.asIteration().children.map((c: N) => c.sourceString), args: args.asIteration().children.map((c: N) => c.rule()) };
    },
    PatArg_kw(name, _eq, v) { return { kw: name.sourceString, val: v.rule() }; },
    PatArg_rest(_d) { return { rest: true }; },
    PatArg_pos(v) { return { val: v.rule() }; },
    PatVal_meta(_d, n) { return { k: 'meta', name: n.sourceString }; },
    PatVal_any(_u) { return { k: 'any' }; },
    PatVal_const(c) { return { k: 'const', v: (c.ir() as { v: Const }).v }; },
    PatVal_ref(n) { return { k: 'ref', name: n.sourceString }; },
    PatVal_name(n) { return { k: 'name', path: n.sourceString }; },
    PatVal_tuple(_o, items, _c, _cl) { return { k: 'tuple', items: items.asIteration().children.map((c: N) => c.rule()) }; },
    Where(_k, _i, cs, _d) { return { kind: 'where', value: cs.children.map((c: N) => c.rule()) }; },
    Constraint(name, _o, args, _c) {
      const { line, col } = lineCol(this as unknown as N);
      return { name: name.sourceString, args: args.asIteration().children.map((c: N) => c.rule()), line, col };
    },
    CArg_meta(_d, n) { return { k: 'meta', name: n.sourceString }; },
    CArg_const(c) { return { k: 'const', v: (c.ir() as { v: Const }).v }; },
    CArg_ref(n) { return { k: 'ref', name: n.sourceString }; },
    Rewrite(_k, kind, _i, lines, _d) {
      const k = kind.rule() as { kind: Rewrite['kind']; target?: string };
      const rw: Rewrite = { kind: k.kind, target: k.target, guards: [], imports: [], binds: [], code: [], noneAbsent: [], line: lineCol(this as unknown as N).line };
      for (const l of lines.children) {
        const v = l.rule() as { kind: string; value: string; name?: string };
        if (v.kind === 'guard') rw.guards.push(v.value);
        else if (v.kind === 'import') rw.imports.push(v.value);
        else if (v.kind === 'bind') rw.binds.push([v.name!, v.value]);
        else if (v.kind === 'noneAbsent') rw.noneAbsent.push(v.value);
        else rw.code.push(v.value);
      }
      return { kind: 'rewrite', value: rw };
    },
    RewriteKind_expr(_k, t) { return { kind: 'expr', target: t.sourceString }; },
    RewriteKind_stmts(_k) { return { kind: 'stmts' }; },
    RewriteKind_init(_k, t) { return { kind: 'init', target: t.sourceString }; },
    RewriteLine_noneAbsent(_k, _d, n) { return { kind: 'noneAbsent', value: n.sourceString }; },
    RewriteLine_guard(_k, s) { return { kind: 'guard', value: s.ir() }; },
    RewriteLine_import(_k, s) { return { kind: 'import', value: s.ir() }; },
    RewriteLine_bind(_k, n, _eq, s) { return { kind: 'bind', name: n.sourceString, value: s.ir() }; },
    RewriteLine_code(s) { return { kind: 'code', value: s.ir() }; },
    Kernel(_k, target, library, callee, reqs) {
      return { kind: 'kernel', value: { target: target.sourceString, library: library.sourceString, callee: callee.ir(), requires: reqs.children.map((r: N) => r.rule()) } };
    },
    KernelReq(_k, s) { return s.ir(); },
    Tune(_k, name, _in, _o, values, _c) { return { kind: 'tune', value: [name.sourceString, values.asIteration().children.map((c: N) => (c.ir() as { v: Const }).v)] }; },
    Example(_k, before, after, opts) {
      const ex: Example = { before: before.ir(), after: after.ir(), shapes: [], dtype: 'fp32', atol: 1e-5, rtol: 1e-4 };
      for (const o of opts.children) Object.assign(ex, o.rule());
      return { kind: 'example', value: ex };
    },
    ExampleOpt_shapes(_k, _o, ints, _c) { return { shapes: ints.asIteration().children.map((c: N) => c.ir()) }; },
    ExampleOpt_dtype(_k, d) { return { dtype: d.sourceString }; },
    ExampleOpt_atol(_k, n) { return { atol: (n.ir() as { v: number }).v }; },
    ExampleOpt_rtol(_k, n) { return { rtol: (n.ir() as { v: number }).v }; },
    ExampleOpt_model(_k, s) { return { model: s.ir() }; },
  });
}

export function ruleSummary(r: Rule): string {
  return `${r.name.padEnd(24)} ${basename(r.file)}  ${r.title}`;
}
