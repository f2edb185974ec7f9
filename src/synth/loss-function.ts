// An LM head's loss through current transformers' `self.loss_function(logits=..., labels=...,
// vocab_size=..., **kwargs)`: a property of the model that picks a helper at run time. What the
// helper computes is not in the code, so the rewrite asks at run time:
// `_adopt.causal_lm_loss(self.loss_function, head, vocab_size, kwargs)` is not None only for
// transformers' own causal- and masked-LM losses with keywords the kernel computes the same
// way, and then gives the kernel's settings (shift, ignore index, reduction, the float32 loss).
// The check runs once: the guard binds its answer (`:=`) and the kernel's keywords read the name.
// `self.loss_function` exists only in transformers releases that need Python 3.9 or later, so the
// assignment expression (3.8) runs wherever the original code does.
// Read statically: the helper must get the head's logits as they are, by keyword or position.
import type { Expr, Op } from '../dsl/ir.js';
import { changedOnAPath } from './logits-paths.js';

/** What the reading needs of the site (a part of the LM-loss reader's context). */
export interface HelperContext {
  expr(e: Expr): string | undefined;
  defOf(e: Expr): Op | undefined;
  phiInputs(e: Expr): Expr[] | undefined;
  nameOf(op: Op): string | undefined;
}

/** The kernel call's arguments after the head, the logits' variable, and the run-time check. */
export interface HelperLoss { args: string; logits: string; guard: string }

/** The helper's own parameters, in order: the rest are keywords the run-time check reads. */
const DATA = ['logits', 'labels', 'vocab_size'] as const;

/** The name the guard binds the check's answer to (the rewrites' `_adopt_` prefix). */
const SETTINGS = '_adopt_lm_loss';

const at = (op: Op) => `line ${op.span.from.line}`;

/** The helper's logits, labels and vocabulary size, and its other keywords as a dict literal
 *  (or the dict passed through **, merged with them); a refusal when they cannot be read. */
function helperArgs(call: Op, cx: HelperContext): { data: Expr[]; rest: string } | string {
  const positional = call.args.filter((a) => a.k !== 'star');
  if (positional.length > DATA.length) return `self.loss_function at ${at(call)} is given more than logits, labels and vocab_size by position`;
  if (call.args.some((a) => a.k === 'star' && !a.double)) return `arguments reach self.loss_function at ${at(call)} through *, which could take the place of the labels`;
  const data: Expr[] = [];
  for (const [i, name] of DATA.entries()) {
    const e = call.kw.find(([k]) => k === name)?.[1] ?? positional[i];
    if (!e) return `self.loss_function at ${at(call)} is not given the ${name}`;
    data.push(e);
  }
  const named: string[] = [];
  const splats: string[] = [];
  const spread = [...call.kw.filter(([k, v]) => k === '**' || v.k === 'star').map(([, v]) => v), ...call.args.filter((a) => a.k === 'star')];
  for (const v of spread) {
    const text = v && cx.expr(v.k === 'star' ? v.e : v);
    if (text === undefined) return `the keywords passed to self.loss_function at ${at(call)} through ** cannot be written where the rewrite runs`;
    splats.push(text);
  }
  for (const [k, v] of call.kw) {
    if (k === '**' || v.k === 'star' || (DATA as readonly string[]).includes(k)) continue;
    const text = cx.expr(v);
    if (text === undefined) return `self.loss_function's ${k} at ${at(call)} cannot be written where the rewrite runs`;
    named.push(`${JSON.stringify(k)}: ${text}`);
  }
  const parts = [...splats.map((s) => `**${s}`), ...named];
  // one dict passed along as it is: the check reads it without a copy
  const rest = !named.length && splats.length === 1 ? splats[0] : `{${parts.join(', ')}}`;
  return { data, rest };
}

/** The kernel's arguments after the head, the logits' variable and the run-time check for a
 *  loss through self.loss_function; a refusal when the helper does not get the head's logits. */
export function readLossFunction(call: Op, cx: HelperContext): HelperLoss | string {
  const args = helperArgs(call, cx);
  if (typeof args === 'string') return args;
  const [logits, labels, vocab] = args.data;
  let head = cx.defOf(logits);
  // the head on one path of a branch merge (the other excluded by the region's guard)
  const merged = cx.phiInputs(logits);
  if (merged) {
    const into = merged.find((e) => cx.defOf(e)?.kind === 'module');
    const changed = into && changedOnAPath(merged, into, cx);
    if (changed) return changed;
    head = into && cx.defOf(into);
  }
  // `self.lm_head(h).contiguous()` (OPT): a copy of the same values, and the kernel's logits are
  // contiguous; the variable is the copy's
  const copy = head?.callee === 'contiguous' && head.args.length === 1 ? head : undefined;
  if (copy) head = cx.defOf(copy.args[0]);
  if (head?.kind !== 'module' || !(head.type ?? []).some((t) => /(^|\.)Linear$/.test(t))) {
    const op = head?.kind === 'op' ? head : undefined;
    return op
      ? `the logits are changed by '${op.callee}' at ${at(op)} before self.loss_function (scaling or soft-capping); the kernel takes the head's logits as they are`
      : `the logits given to self.loss_function at ${at(call)} are not the head's output`;
  }
  const name = cx.nameOf(copy ?? head);
  if (!name) return `the logits at ${at(head)} are not held in a variable the rewrite can assign`;
  if (head.callee.startsWith('%')) return `the head at ${at(head)} cannot be named where the rewrite runs`;
  const labelText = cx.expr(labels);
  const vocabText = cx.expr(vocab);
  if (labelText === undefined) return 'the labels cannot be written where the rewrite runs (a statement before the loss reassigns them, or they are built there)';
  if (vocabText === undefined) return `the vocab_size given to self.loss_function at ${at(call)} cannot be written where the rewrite runs`;
  const check = `_adopt.causal_lm_loss(${call.callee}, ${head.callee}, ${vocabText}, ${args.rest})`;
  return { logits: name, args: `${labelText}, **${SETTINGS}`, guard: `(${SETTINGS} := ${check}) is not None` };
}
