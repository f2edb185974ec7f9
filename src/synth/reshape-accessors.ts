// Template accessors for a reshape the rewrite keeps around a kernel call: the call written as a
// method to append (`.view(shape)`), and the guard that it commutes with a LayerNorm after it.
import type { Op } from '../dsl/ir.js';
import type { AccessorContext } from './accessor-context.js';

/** `.view(<args as written>)` of a method-call reshape, to append to the kernel's result. */
export function reshapedAs(op: Op, cx: AccessorContext): string | undefined {
  if (op.callee !== 'view' && op.callee !== 'reshape') return undefined;
  const node = cx.nodeAt(op);
  const fn = node?.type === 'call' ? node.childForFieldName('function') : null;
  const args = node?.childForFieldName('arguments');
  if (fn?.type !== 'attribute' || args?.type !== 'argument_list') return undefined;
  return `.${op.callee}${args.text}`;
}

/** For a LayerNorm whose input is `(dropout(x) + residual).view(shape)`: the condition that the
 *  view keeps the last dimension and the norm normalises only that one, so the norm may run before
 *  the view; `True` when nothing reshapes its input. */
export function viewCheck(op: Op, cx: AccessorContext): string | undefined {
  const v = op.args[0] ? cx.defOf(op.args[0]) : undefined;
  if (v?.callee !== 'view' && v?.callee !== 'reshape') return 'True';
  const sum = v.args[0] ? cx.defOf(v.args[0]) : undefined;
  const drop = sum?.callee === 'add' ? sum.args.map((a) => cx.defOf(a)).find((d) => d?.callee === 'dropout' || (d?.kind === 'module' && d.type?.some((t) => /Dropout$/.test(t)))) : undefined;
  const x = drop?.args[0] && cx.expr(drop.args[0]);
  const shape = v.args[1] && cx.expr(v.args[1]);
  const norm = op.kind === 'module' && !op.callee.startsWith('%') ? op.callee : undefined;
  if (!x || !shape || !norm) return undefined;
  return `${shape}[-1] == ${x}.shape[-1] and len(${norm}.normalized_shape) == 1`;
}
