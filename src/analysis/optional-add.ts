// `x if m is None else x + m` (timm's `maybe_add_mask`) and `x + m if m is not None else x`:
// an additive mask or bias that may be absent. The analysis keeps the add alone, marked
// `absent_if_none=True`, so a rule sees the mask add it knows; a kernel that takes the mask as an
// argument treats None as no mask, which is what the conditional computes.
import type { Expr, Op, Stmt } from '../dsl/ir.js';
import { sameExpr } from './lower-support.js';

export const ABSENT_IF_NONE = 'absent_if_none';

/** The add op of such a conditional, given its condition, its value when true and when false
 *  (ops looked up among `ops`, the statements emitted so far); undefined for any other form. */
export function optionalAdd(ops: Stmt[], cond: Expr, whenTrue: Expr, whenFalse: Expr): Op | undefined {
  const def = (e: Expr): Op | undefined => {
    if (e.k !== 'ssa') return undefined;
    for (let i = ops.length - 1; i >= 0; i--) {
      const s = ops[i];
      if (s.k === 'op' && s.id === e.id) return s;
    }
    return undefined;
  };
  const test = def(cond);
  if (!test || (test.callee !== 'is' && test.callee !== 'isnot') || test.args.length !== 2) return undefined;
  const [m, none] = test.args;
  if (none.k !== 'const' || none.v !== null) return undefined;
  const [plain, added] = test.callee === 'is' ? [whenTrue, whenFalse] : [whenFalse, whenTrue];
  const add = def(added);
  if (add?.callee !== 'add' || add.args.length !== 2 || add.kw.length) return undefined;
  const [a, b] = add.args;
  const ok = (sameExpr(a, plain) && sameExpr(b, m)) || (sameExpr(b, plain) && sameExpr(a, m));
  return ok ? add : undefined;
}
