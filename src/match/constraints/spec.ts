// What a `where` constraint is: its name, the kinds of its arguments (which the rule loader
// checks), what it means, the library rules it was written for, and its check on a match.
import type { Expr, Op } from '../../dsl/ir.js';
import type { State } from '../state.js';
import type { MethodView } from '../method.js';
import type { PatVal } from '../rule-ir.js';

/** `line`: a pattern line's name; `meta`: a `$metavariable`; `value`: either; `const`: a literal. */
export type ArgKind = 'line' | 'meta' | 'value' | 'const';

/** Undefined when the constraint holds, else the reason (shown by --why-not). */
export type Check = (args: PatVal[], st: State, view: MethodView) => string | undefined;

export interface ConstraintSpec {
  name: string;
  /** The kinds of the arguments in order; with `variadic`, the last kind repeats. */
  args: ArgKind[];
  variadic?: boolean;
  /** The library rules it was written for; absent for a general constraint. */
  rules?: string[];
  doc: string;
  check: Check;
}

export const opOf = (a: PatVal, st: State): Op | null | undefined => (a.k === 'ref' ? st.ops.get(a.name) : undefined);
export const line = (op: Op) => `${op.span.file ? `${op.span.file}:` : ''}${op.span.from.line}`;
/** The ids of the ops a match bound. */
export const matchedIds = (st: State) => new Set([...st.ops.values()].filter((o): o is Op => !!o).map((o) => o.id));
/** The named lines that are present in the match, with their ops. */
export const presentLines = (args: PatVal[], st: State) => args.flatMap((a): [PatVal, Op][] => { const op = opOf(a, st); return op ? [[a, op]] : []; });
/** The values three `value` arguments are bound to, and the ops defining the first two. */
export function sliceOperands(args: PatVal[], st: State, view: MethodView): { x: Expr; a: Op | undefined; b: Op | undefined } | undefined {
  const [a, b, x] = args.map((m) => (m.k === 'meta' ? st.metas.get(m.name) : m.k === 'ref' ? st.vals.get(m.name) : undefined));
  if (!a || !b || !x) return undefined;
  const defOf = (e: Expr) => (e.k === 'ssa' ? view.defs.get(e.id) : undefined);
  return { x, a: defOf(a), b: defOf(b) };
}
export const refName = (a: PatVal) => (a.k === 'ref' ? a.name : '?');

export function constIs(e: Expr | undefined, v: number | string): boolean {
  return e?.k === 'const' && e.v === v;
}

export function brief(e: Expr): string {
  return e.k === 'const' ? e.raw ?? JSON.stringify(e.v) : e.k === 'name' ? e.path : e.k === 'ssa' ? `%${e.id}` : e.k;
}
