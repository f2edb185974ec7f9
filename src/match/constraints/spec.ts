// What a `where` constraint is: its name, the kinds of its arguments (which the rule loader
// checks), what it means, the library rules it was written for, and its check on a match.
import type { Expr, Op } from '../../dsl/ir.js';
import type { State } from '../state.js';
import type { MethodView } from '../method.js';
import type { PatOp, PatVal } from '../rule-ir.js';
import { patternText } from '../why-not.js';

/** `line`: a pattern line's name; `meta`: a `$metavariable`; `value`: either; `const`: a literal. */
export type ArgKind = 'line' | 'meta' | 'value' | 'const';

/** What a check is told of the rule beyond its own arguments. */
export interface CheckContext {
  /** A pattern line as someone reading about their model can place it, since the line's name in
   *  the rule (`mb`) means nothing to them: the op it matched, where, and the line as the rule
   *  writes it (`view at line 21 (pattern line 'mb = view(m, ...)?')`), or, for a line the match
   *  lacks, the line as the rule writes it (`'mb = view(m, ...)?'`). */
  said: (a: PatVal) => string;
}

/** Undefined when the constraint holds, else the reason (shown by --why-not). */
export type Check = (args: PatVal[], st: State, view: MethodView, cx: CheckContext) => string | undefined;

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

/** The context a rule's constraints are checked in on a match of its pattern. */
export function checkContext(pattern: readonly PatOp[], st: State): CheckContext {
  const text = (a: PatVal) => {
    if (a.k !== 'ref') return a.k === 'meta' ? `$${a.name}` : '?';
    const p = pattern.find((q) => q.name === a.name);
    return `'${p ? patternText(p) : a.name}'`;
  };
  return {
    said: (a) => {
      const op = opOf(a, st);
      return op ? `${op.callee} at line ${line(op)} (pattern line ${text(a)})` : text(a);
    },
  };
}

/** `a`, `a and b`, `a, b and c` (with `word` for `and`). */
export const listed = (xs: string[], word: string) => (xs.length < 3 ? xs.join(` ${word} `) : `${xs.slice(0, -1).join(', ')} ${word} ${xs[xs.length - 1]}`);

export function constIs(e: Expr | undefined, v: number | string): boolean {
  return e?.k === 'const' && e.v === v;
}

export function brief(e: Expr): string {
  return e.k === 'const' ? e.raw ?? JSON.stringify(e.v) : e.k === 'name' ? e.path : e.k === 'ssa' ? `%${e.id}` : e.k;
}
