// Constraints of the norm rules: a reshape between a residual add and the LayerNorm after it
// (OPT's `(residual + h).view(shape)`), which commutes with the norm only when it keeps the
// normalised last dimension; and the cast an RMSNorm makes of its normalised value, which the
// kernel makes back to the input's dtype.
import type { Expr, Op } from '../../dsl/ir.js';
import { exprText, sameExpr } from '../../analysis/lower.js';
import type { MethodView } from '../method.js';
import { line, opOf, type ConstraintSpec } from './spec.js';

/** `x.shape` or `x.size()`, directly or through the name it was saved in. */
export function isShapeOf(e: Expr | undefined, view: MethodView): boolean {
  const d = e?.k === 'ssa' ? view.defs.get(e.id) : undefined;
  if (!d) return false;
  if (d.callee === 'getattr') return d.args[1]?.k === 'const' && d.args[1].v === 'shape';
  return d.callee === 'size' && d.args.length === 1 && !d.kw.length;
}

/** `x.dtype`, directly or through the name it was saved in (`input_dtype = x.dtype`). */
function isDtypeOf(e: Expr, x: Expr, view: MethodView): boolean {
  const d = e.k === 'ssa' ? view.defs.get(e.id) : undefined;
  return d?.callee === 'getattr' && d.args.length === 2 && d.args[1].k === 'const' && d.args[1].v === 'dtype' && sameExpr(d.args[0], x);
}

/** A cast's target as the reader wrote it: `torch.bfloat16`, `self.weight.dtype`. */
function targetText(e: Expr, view: MethodView): string {
  const d = e.k === 'ssa' ? view.defs.get(e.id) : undefined;
  if (d?.callee === 'getattr' && d.args[1]?.k === 'const' && d.args[0].k !== 'ssa') return `${exprText(d.args[0])}.${String(d.args[1].v)}`;
  return e.k === 'ssa' ? 'a dtype computed in forward' : exprText(e);
}

/** Undefined when `b` (a `to` or `type_as` of the normalised value) casts to `x`'s own dtype, else
 *  what it casts to. `h.to(x)` takes x's dtype (and device, where the input already is). */
function castElsewhere(b: Op, x: Expr, view: MethodView): string | undefined {
  if (b.callee === 'type_as') return b.args.length === 2 && !b.kw.length && sameExpr(b.args[1], x) ? undefined : 'another tensor\'s dtype';
  const dtype = b.kw.find(([k]) => k === 'dtype')?.[1];
  const targets = [...b.args.slice(1), ...(dtype ? [dtype] : [])];
  // `non_blocking` and `copy` do not change the value; a device or memory format is refused
  const others = b.kw.filter(([k]) => !['dtype', 'non_blocking', 'copy'].includes(k));
  if (targets.length !== 1 || others.length) return `${targets.map((t) => targetText(t, view)).join(', ') || 'no dtype'}${others.length ? ` with ${others.map(([k]) => `${k}=`).join(', ')}` : ''}`;
  return sameExpr(targets[0], x) || isDtypeOf(targets[0], x, view) ? undefined : targetText(targets[0], view);
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
  {
    name: 'cast_back', args: ['line', 'meta'], rules: ['rmsnorm'],
    doc: "The cast line casts to `$x`'s own dtype: `.to(x.dtype)`, the dtype read off `$x` directly or saved before (`input_dtype = x.dtype`; `dtype=` alike), `.to(x)` or `.type_as(x)`, which is the cast back the kernel makes. A cast to another dtype (the weight's, a fixed half precision) computes something else where the dtypes differ.",
    check(args, st, view) {
      const b = opOf(args[0], st);
      const x = args[1].k === 'meta' ? st.metas.get(args[1].name) : undefined;
      if (!b || !x) return undefined;
      const to = castElsewhere(b, x, view);
      const own = x.k === 'ssa' ? '' : ` (${exprText(x)}.dtype)`;
      return to === undefined ? undefined : `the normalised value is cast to ${to} at line ${line(b)}, not back to the input's own dtype${own} as the kernel casts it`;
    },
  },
];
