// What a language-model loss computes, read off the IR for the lm_head_ce rewrite: the labels
// the loss is taken against (before the shift), whether logits and labels are shifted by one
// position, the ignore index and the reduction, and the dtype the logits are cast to. Each form
// the fused kernel does not compute the same way is refused with the reason a user reads.
import type { Expr, Op } from '../dsl/ir.js';
import { readLossFunction } from './loss-function.js';
import { changedOnAPath } from './logits-paths.js';

/** What the reading needs of the site. */
export interface LossContext {
  expr(e: Expr): string | undefined;
  defOf(e: Expr): Op | undefined;
  /** The inputs of a value merged from branches (a phi), when it is one. */
  phiInputs(e: Expr): Expr[] | undefined;
  constructorOf(op: Op): Expr | undefined;
  /** The ops of the method, in order (to find a loss module built in the forward itself). */
  ops(): Op[];
  /** The variable an op's result is assigned to, where it is one. */
  nameOf(op: Op): string | undefined;
}

export interface LmLoss {
  /** `labels, shift=True, ignore_index=..., reduction=...` for the kernel call. */
  args: string;
  /** The variable holding the logits as the code returns them (after a cast, if any). */
  logits: string;
  /** A run-time condition for the kernel to compute the same loss (a loss helper's identity). */
  guard?: string;
}

const kwOf = (kw: [string, Expr][], name: string) => kw.find(([k]) => k === name)?.[1];
const isConst = (e: Expr | undefined, v: number | string) => e?.k === 'const' && e.v === v;
const at = (op: Op) => `line ${op.span.from.line}`;

/** A slice item `lo:hi` with no step. */
function sliceIs(e: Expr | undefined, lo: number | null, hi: number | null): boolean {
  if (e?.k !== 'slice' || e.step) return false;
  const end = (x: Expr | null, v: number | null) => (v === null ? x === null : isConst(x ?? undefined, v));
  return end(e.lo, lo) && end(e.hi, hi);
}

const ELLIPSIS = (e: Expr | undefined) => e?.k === 'name' && e.path === '...';

/** `x[..., :-1, :]` or `x[:, :-1, :]` / `x[:, :-1]` on the logits: all positions but the last. */
function dropsLastPosition(op: Op): boolean {
  const idx = op.args[1];
  if (idx?.k !== 'tuple') return false;
  const [a, b, c] = idx.items;
  if (idx.items.length === 3 && (ELLIPSIS(a) || sliceIs(a, null, null))) return sliceIs(b, null, -1) && sliceIs(c, null, null);
  return idx.items.length === 2 && sliceIs(a, null, null) && sliceIs(b, null, -1);
}

/** `y[..., 1:]` or `y[:, 1:]` on the labels: all positions but the first. */
function dropsFirstPosition(op: Op): boolean {
  const idx = op.args[1];
  return idx?.k === 'tuple' && idx.items.length === 2 && (ELLIPSIS(idx.items[0]) || sliceIs(idx.items[0], null, null)) && sliceIs(idx.items[1], 1, null);
}

/** The labels' path back from the loss: reshapes to 1-D, copies and device moves peeled off,
 *  the shift noted. The labels given to the kernel are the value the shift indexes (the value
 *  a name holds where the fast path runs, after a device move it runs first). */
function readLabels(target: Expr, cx: LossContext): { root: Expr; shifted: boolean } | string {
  let e = target;
  let shifted = false;
  // unshifted, the labels are the value of the first device move (which a statement the fast
  // path runs first may hold under the original name), else the root
  let moved: Expr | undefined;
  for (let guard = 0; guard < 16; guard++) {
    const op = cx.defOf(e);
    if (!op || op.kind !== 'op') break;
    if ((op.callee === 'view' || op.callee === 'reshape') && op.args.length === 2 && isConst(op.args[1], -1)) e = op.args[0];
    else if (op.callee === 'contiguous') e = op.args[0];
    else if (op.callee === 'to' && !kwOf(op.kw, 'dtype')) { moved ??= e; e = op.args[0]; }
    else if (op.callee === 'getitem' && !shifted && dropsFirstPosition(op)) return { root: op.args[0], shifted: true };
    else if (op.callee === 'getitem') return `the labels are indexed at ${at(op)} in a way the kernel's shift by one position does not cover`;
    else break;
  }
  return { root: moved ?? e, shifted };
}

/** The loss call's settings: from the functional call, or from the CrossEntropyLoss module's
 *  constructor (an attribute, or built in the forward itself). */
function settingsOf(ce: Op, cx: LossContext): { kw: [string, Expr][]; extraPositional: boolean; fromInit?: boolean } | string {
  const data = (k: string) => k === 'input' || k === 'target';
  const positional = ce.args.filter((a) => a.k !== 'star');
  if (ce.args.some((a) => a.k === 'star')) return `keywords or arguments reach the loss at ${at(ce)} through * or **; they could set class weights or label smoothing, which the kernel does not take`;
  if (ce.kind !== 'module') return { kw: ce.kw.filter(([k]) => !data(k)), extraPositional: positional.length > 2 };
  if (positional.length > 2 || ce.kw.some(([k]) => !data(k))) return `the loss module is called with more than the logits and the labels at ${at(ce)}`;
  const attr = cx.constructorOf(ce);
  if (attr?.k === 'call') return { kw: attr.kw, extraPositional: attr.args.length > 0, fromInit: true };
  // built in the forward: the constructions assigned to the name called (several alike are one)
  const built = cx.ops().filter((o) => o.kind === 'call' && /(^|\.)CrossEntropyLoss$/.test(o.callee) && cx.nameOf(o) === ce.callee);
  const same = built.every((o) => JSON.stringify([o.args, o.kw]) === JSON.stringify([built[0].args, built[0].kw]));
  if (!built.length || !same) return `the CrossEntropyLoss called at ${at(ce)} is not built where adopt can read its settings`;
  return { kw: built[0].kw, extraPositional: built[0].args.length > 0 };
}

const SETTING_WHY: Record<string, string> = {
  weight: 'class weights',
  label_smoothing: 'label smoothing',
  size_average: 'the deprecated size_average',
  reduce: 'the deprecated reduce',
};

/** The settings as kernel keywords; a refusal for one the kernel does not take. */
function settingArgs(ce: Op, cx: LossContext): string[] | string {
  const settings = settingsOf(ce, cx);
  if (typeof settings === 'string') return settings;
  if (settings.extraPositional) return `the loss at ${at(ce)} is given settings by position; the kernel takes ignore_index and reduction only`;
  const out: string[] = [];
  for (const [k, v] of settings.kw) {
    if (k === '**' || v.k === 'star') return `keywords reach the loss at ${at(ce)} through **; they could set class weights or label smoothing, which the kernel does not take`;
    if (k === 'ignore_index' || k === 'reduction') {
      // a constructor argument read in __init__'s scope (`ignore_index=config.pad_token_id`) is
      // not a name the forward has: the module keeps the setting under the keyword's name
      const initScoped = settings.fromInit && v.k !== 'const' && !(v.k === 'name' && v.path.startsWith('self.'));
      const text = initScoped ? `${ce.callee}.${k}` : cx.expr(v);
      if (text === undefined) return `the loss's ${k} at ${at(ce)} cannot be written where the rewrite runs`;
      if (!(k === 'ignore_index' && isConst(v, -100)) && !(k === 'reduction' && isConst(v, 'mean'))) out.push(`${k}=${text}`);
      continue;
    }
    if (k in SETTING_WHY && !isConst(v, 0) && !(v.k === 'const' && v.v === null)) return `the loss at ${at(ce)} uses ${SETTING_WHY[k]}, which the kernel does not take`;
    if (!(k in SETTING_WHY)) return `the loss at ${at(ce)} is passed '${k}', which the kernel does not take`;
  }
  return out;
}

/** The logits' path back from the loss to the head: one flatten to (-1, vocab), copies, at most
 *  one cast to float32 and one shift; anything else (scaling, soft-capping) is refused. */
function readLogits(input: Expr, cx: LossContext): { shifted: boolean; named: Op } | string {
  const isHead = (x: Expr) => cx.defOf(x)?.kind === 'module' && (cx.defOf(x)!.type ?? []).some((t) => /(^|\.)Linear$/.test(t));
  let e = input;
  let shifted = false;
  let flattened = false;
  let cast: Op | undefined;
  for (let guard = 0; ; guard++) {
    if (guard > 16) return 'the logits reach the loss through more steps than adopt follows';
    if (isHead(e)) break;
    const merged = cx.phiInputs(e);
    if (merged) {
      // the head on one path (LLaMA's tensor-parallel slices on the other, which the region's
      // guard excludes)
      const into = merged.find(isHead);
      if (!into) return 'the logits reach the loss through a branch merge adopt cannot follow';
      const changed = changedOnAPath(merged, into, cx);
      if (changed) return changed;
      e = into;
      continue;
    }
    const op = cx.defOf(e);
    if (!op) return 'the logits reach the loss through a value adopt cannot follow';
    if ((op.callee === 'view' || op.callee === 'reshape') && op.args.length === 3 && isConst(op.args[1], -1) && !flattened) flattened = true;
    else if (op.callee === 'view' || op.callee === 'reshape') return `the logits are reshaped at ${at(op)} into another shape than (-1, vocab)`;
    else if (op.callee === 'contiguous') { /* a copy: the same values */ } else if (op.callee === 'to') {
      const dtype = kwOf(op.kw, 'dtype');
      if (cast || op.args.length > 1 || !(dtype?.k === 'name' && /^torch\.(float32|float)$/.test(dtype.path))) return `the logits are cast at ${at(op)} to something other than float32`;
      cast = op;
    } else if (op.callee === 'getitem' && !shifted && dropsLastPosition(op)) shifted = true;
    else if (op.callee === 'getitem') return `the logits are indexed at ${at(op)} in a way the kernel's shift by one position does not cover`;
    else return `the logits are changed by '${op.callee}' at ${at(op)} before the loss (scaling or soft-capping); the kernel takes the head's logits as they are`;
    e = op.args[0];
  }
  if (!flattened) return 'the logits reach the loss without being flattened to (-1, vocab); cross_entropy would read their second dimension as the classes';
  return { shifted, named: cast ?? cx.defOf(e)! };
}

/** The kernel arguments after the head for a loss `ce` over an LM head's logits, or why the
 *  kernel would compute something else. */
export function readLmLoss(ce: Op, cx: LossContext): LmLoss | string {
  if (/loss_function$/.test(ce.callee)) return readLossFunction(ce, cx);
  const input = kwOf(ce.kw, 'input') ?? ce.args[0];
  const target = kwOf(ce.kw, 'target') ?? ce.args[1];
  if (!input || !target) return `the loss at ${at(ce)} is not called with the logits and the labels`;
  const logits = readLogits(input, cx);
  if (typeof logits === 'string') return logits;
  const labels = readLabels(target, cx);
  if (typeof labels === 'string') return labels;
  if (labels.shifted !== logits.shifted) return labels.shifted ? 'the labels are shifted by one position but the logits are not' : 'the logits are shifted by one position but the labels are not';
  const labelText = cx.expr(labels.root);
  if (labelText === undefined) return 'the labels cannot be written where the rewrite runs (a statement before the loss reassigns them, or they are built there)';
  const settings = settingArgs(ce, cx);
  if (typeof settings === 'string') return settings;
  const name = cx.nameOf(logits.named);
  if (!name) return `the logits at ${at(logits.named)} are not held in a variable the rewrite can assign`;
  return { logits: name, args: [labelText, ...settings.filter((s) => s.startsWith('ignore_index')), `shift=${logits.shifted ? 'True' : 'False'}`, ...settings.filter((s) => s.startsWith('reduction'))].join(', ') };
}
