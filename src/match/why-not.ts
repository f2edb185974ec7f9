// Near misses for --why-not: where a rule's pattern began to match and why it stopped, ranked by
// how much of the pattern matched. A complete match refused by a `where` constraint, or most of a
// pattern found, is close and shown by default; a lone first line that nothing follows (every
// Linear against every Linear+X rule) is shown only with --why-not=all. A rule whose first line
// is missing from a method but whose other lines are mostly there (a hand-written RMSNorm without
// the float32 cast) is found from those lines.
import type { Expr, Op } from '../dsl/ir.js';
import type { MethodView } from './method.js';
import type { PatArg, PatOp, PatVal, Rule } from './rule-ir.js';

/** Where a rule's pattern began to match and stopped: `matched` of the pattern's `of` required
 *  lines were found (all of them, when a `where` constraint is what failed). */
export interface NearMiss { rule: string; file: string; line: number; col: number; owner: string; reason: string; matched: number; of: number; constraint?: boolean }

export function requiredLines(rule: Rule): number {
  return rule.pattern.filter((p) => !p.optional).length;
}

/** 1 for a complete match refused by a constraint; else the share of required lines found. */
export function closeness(n: NearMiss): number {
  return n.constraint ? 1 : n.of ? n.matched / n.of : 0;
}

/** Close enough to show by default: refused by a constraint, a one-line pattern, or at least two
 *  lines and half of the pattern found. */
export function isClose(n: NearMiss): boolean {
  return !!n.constraint || (n.of === 1 && n.matched === 1) || (n.matched >= 2 && n.matched * 2 >= n.of);
}

/** The near misses to report, closest first: the close ones, or all of them. By default a near
 *  miss inside code another rule found is left out (a site of the RMSNorm rule is no near miss
 *  of its float32-variance variant). */
export function rankNearMisses(misses: NearMiss[], which: 'close' | 'all', sites: { file: string; lines: [number, number] }[] = []): { shown: NearMiss[]; hidden: number } {
  // the close ones lead in either view: a lone first line can tie a close one's share
  const ranked = [...misses].sort((a, b) => Number(isClose(b)) - Number(isClose(a)) || closeness(b) - closeness(a) || a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col || a.rule.localeCompare(b.rule));
  const inSite = (n: NearMiss) => sites.some((s) => s.file === n.file && s.lines[0] <= n.line && n.line <= s.lines[1]);
  const shown = which === 'all' ? ranked : ranked.filter((n) => isClose(n) && !inSite(n));
  return { shown, hidden: ranked.length - shown.length };
}

export function formatNearMiss(n: NearMiss): string {
  const how = n.constraint ? 'the whole pattern matched' : `${n.matched} of ${n.of} pattern lines matched`;
  return `${n.file}:${n.line}:${n.col}: ${n.rule}: not a site: ${n.reason} (${how})`;
}

/** The best partial match of a rule in a method where its first line occurs nowhere: the
 *  required lines whose ops are connected by dataflow. Reported when at least two thirds of the
 *  required lines (and at least three) are there. */
export function partialMatch(rule: Rule, view: MethodView, matches: (p: PatOp, op: Op) => boolean): NearMiss | undefined {
  const required = rule.pattern.filter((p) => !p.optional);
  if (required.length < 3) return undefined;
  const lines = new Map<number, Set<string>>();
  const byId = new Map<number, Op>();
  for (const op of view.ops) {
    for (const p of required) {
      const forms = [p, ...(p.alts ?? []).map((f) => ({ ...p, ...f, alts: undefined }))];
      if (!forms.some((f) => matches(f, op))) continue;
      lines.set(op.id, (lines.get(op.id) ?? new Set()).add(p.name));
      byId.set(op.id, op);
    }
  }
  if (byId.size < 3) return undefined;
  const parent = new Map([...byId.keys()].map((id) => [id, id]));
  const root = (id: number): number => (parent.get(id) === id ? id : root(parent.get(id)!));
  for (const op of byId.values()) {
    for (const used of ssaIds([...op.args, ...op.kw.map(([, e]) => e)])) if (byId.has(used)) parent.set(root(used), root(op.id));
  }
  const groups = new Map<number, Op[]>();
  for (const op of byId.values()) groups.set(root(op.id), [...(groups.get(root(op.id)) ?? []), op]);
  let best: { ops: Op[]; found: Set<string>; count: number } | undefined;
  for (const ops of groups.values()) {
    const found = new Set(ops.flatMap((o) => [...lines.get(o.id)!]));
    const count = Math.min(found.size, ops.length);
    if (!best || count > best.count) best = { ops, found, count };
  }
  if (!best || best.count < 3 || best.count * 3 < required.length * 2) return undefined;
  const missing = required.filter((p) => !best!.found.has(p.name));
  if (!missing.length) return undefined;
  const first = best.ops.reduce((a, b) => (b.span.start < a.span.start ? b : a));
  return {
    rule: rule.name, file: first.span.file ?? view.file.path, line: first.span.from.line, col: first.span.from.col, owner: view.module?.name ?? view.owner ?? '',
    reason: `the code around it has no ${missing.map((p) => `'${patternText(p)}'`).join(', ')}`,
    matched: best.count, of: required.length,
  };
}

function ssaIds(es: Expr[]): number[] {
  return es.flatMap((e) => (e.k === 'ssa' ? [e.id] : e.k === 'tuple' || e.k === 'list' ? ssaIds(e.items) : []));
}

/** A pattern line as the rule writes it: `c = to($x, dtype=torch.float32)`, with its constructor
 *  (`Linear(...)(x)`), its `or` forms and the `?` of an optional line. */
export function patternText(p: PatOp): string {
  const val = (v: PatVal): string => (v.k === 'meta' ? `$${v.name}` : v.k === 'any' ? '_' : v.k === 'const' ? JSON.stringify(v.v) : v.k === 'name' ? v.path : v.k === 'ref' ? v.name : `(${v.items.map(val).join(', ')})`);
  const arg = (a: PatArg) => (a.rest ? '...' : a.kw ? `${a.kw}=${val(a.val!)}` : val(a.val!));
  const call = (callees: string[], args: PatArg[]) => `${callees.join('|')}${p.ctor && args === p.args ? `(${p.ctor.map(arg).join(', ')})` : ''}(${args.map(arg).join(', ')})`;
  return `${p.name} = ${[call(p.callees, p.args), ...(p.alts ?? []).map((f) => call(f.callees, f.args))].join(' or ')}${p.optional ? '?' : ''}`;
}
