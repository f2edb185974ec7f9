// Logits merged from branches before a loss: whether a branch other than the head's own output
// changes the head's logits (then the fast path, which takes the head's branch, would skip it).
import type { Expr, Op } from '../dsl/ir.js';

/** The dataflow the check reads. */
export interface Dataflow {
  defOf(e: Expr): Op | undefined;
  phiInputs(e: Expr): Expr[] | undefined;
}

const at = (op: Op) => `line ${op.span.from.line}`;

/** Whether a value is computed from `from` (through its ops' arguments and branch merges). */
function derivesFrom(e: Expr, from: Expr, cx: Dataflow, seen = new Set<Expr>()): boolean {
  if (e.k !== 'ssa' || seen.has(e) || seen.size > 64) return false;
  if (from.k === 'ssa' && e.id === from.id) return true;
  seen.add(e);
  const ins = cx.phiInputs(e) ?? cx.defOf(e)?.args.flatMap((a) => (a.k === 'star' ? [a.e] : a.k === 'tuple' || a.k === 'list' ? a.items : [a])) ?? [];
  return ins.some((x) => derivesFrom(x, from, cx, seen));
}

/** For logits merged from branches, one of them the head's own output: a refusal when another
 *  branch changes the head's logits (Gemma 2's `if final_logit_softcapping is not None:`
 *  soft-capping), which the fast path would skip; undefined when the other branches compute
 *  the logits apart from the head (LLaMA's tensor-parallel slices), which the guard excludes. */
export function changedOnAPath(merged: Expr[], head: Expr, cx: Dataflow): string | undefined {
  for (const other of merged) {
    if (other === head || !derivesFrom(other, head, cx)) continue;
    const op = cx.defOf(other);
    return `the logits are changed${op ? ` by '${op.callee}' at ${at(op)}` : ''} on one path before the loss (scaling or soft-capping under a condition); the kernel takes the head's logits as they are`;
  }
  return undefined;
}
