// Constraints of the norm rules: a reshape between a residual add and the LayerNorm after it
// (OPT's `(residual + h).view(shape)`), which commutes with the norm only when it keeps the
// normalised last dimension.
import type { Expr } from '../../dsl/ir.js';
import type { MethodView } from '../method.js';
import { line, opOf, type ConstraintSpec } from './spec.js';

/** `x.shape` or `x.size()`, directly or through the name it was saved in. */
export function isShapeOf(e: Expr | undefined, view: MethodView): boolean {
  const d = e?.k === 'ssa' ? view.defs.get(e.id) : undefined;
  if (!d) return false;
  if (d.callee === 'getattr') return d.args[1]?.k === 'const' && d.args[1].v === 'shape';
  return d.callee === 'size' && d.args.length === 1 && !d.kw.length;
}

export const NORM_CONSTRAINTS: ConstraintSpec[] = [
  {
    name: 'reshaped_to_a_shape', args: ['line'], rules: ['dropout_add_layernorm'],
    doc: "An optional view/reshape takes one shape read off a tensor (`h.view(saved_shape)` with `saved_shape = x.shape`): the guard can then compare its last size with the input's (`{y.view_check}`).",
    check(args, st, view) {
      const v = opOf(args[0], st);
      if (!v) return undefined;
      const ok = v.args.length === 2 && !v.kw.length && isShapeOf(v.args[1], view);
      return ok ? undefined : `the ${v.callee} at line ${line(v)} does not take one shape read off a tensor (x.shape): whether it keeps the normalised last dimension is not known`;
    },
  },
];
