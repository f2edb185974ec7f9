// Constraints of the attention rule: the row maximum subtracted before the softmax, and the
// output computed transposed (`v @ pᵀ`).
import type { Op } from '../../dsl/ir.js';
import { sameExpr } from '../../analysis/lower.js';
import type { MethodView } from '../method.js';
import { constIs, line, opOf, type ConstraintSpec } from './spec.js';

export const ATTENTION_CONSTRAINTS: ConstraintSpec[] = [
  {
    name: 'heads_given', args: ['meta'], rules: ['attention'],
    doc: "The head count a view of the scores names (`view(bsz, $heads, L, S)`) is given, not left to torch to infer (`-1`): the kernel needs the count. Holds when `$heads` is unbound.",
    check(args, st) {
      const [m] = args;
      const v = m.k === 'meta' ? st.metas.get(m.name) : undefined;
      if (v?.k !== 'const' || typeof v.v !== 'number' || v.v > 0) return undefined;
      return `the scores are viewed with ${v.raw ?? v.v} heads, which torch infers from the other sizes; the kernel needs the count itself`;
    },
  },
  {
    name: 'row_max', args: ['meta', 'line'], rules: ['attention'],
    doc: "`$m` is the maximum of `x` over its last dimension, kept (`x.amax(dim=-1, keepdim=True)`, possibly detached): subtracting it leaves a softmax unchanged. Holds when `$m` is unbound.",
    check(args, st, view) {
      const [m, x] = args;
      const me = m.k === 'meta' ? st.metas.get(m.name) : undefined;
      const xe = x.k === 'ref' ? st.vals.get(x.name) : undefined;
      if (!me || !xe) return undefined;
      let def = me.k === 'ssa' ? view.defs.get(me.id) : undefined;
      if (def?.callee === 'detach') def = def.args[0]?.k === 'ssa' ? view.defs.get(def.args[0].id) : undefined;
      if (def?.callee !== 'amax') return 'the value subtracted before the softmax is not the row maximum';
      const dim = def.kw.find(([k]) => k === 'dim')?.[1] ?? def.args[1];
      const keep = def.kw.find(([k]) => k === 'keepdim')?.[1] ?? def.args[2];
      const ok = sameExpr(def.args[0], xe) && constIs(dim, -1) && keep?.k === 'const' && keep.v === true;
      return ok ? undefined : `the value subtracted at line ${line(def)} is not x.amax(dim=-1, keepdim=True) of the scores`;
    },
  },
  {
    name: 'transposed_by', args: ['line', 'line'], rules: ['attention'],
    doc: "`$o` took its `or` form (`matmul($v, pt)`: the output computed transposed, channels first) exactly when the optional line `pt` is present, and `pt` exchanges the last two dimensions.",
    check(args, st, view, cx) {
      const [o, pt] = args;
      const t = opOf(pt, st);
      const alt = o.k === 'ref' && st.forms.has(o.name);
      if (!t) return alt ? `${cx.said(o)} takes its transposed form without a transposition before it` : undefined;
      if (!alt) return `${cx.said(pt)} transposes the probabilities, but ${cx.said(o)} does not take the transposed form`;
      return swapsLastTwo(t, view) ? undefined : `${t.callee} at line ${line(t)} does not exchange the last two dimensions`;
    },
  },
];

/** `transpose(x, -2, -1)`, or a transpose/permute that exchanges only the last two dimensions
 *  of a tensor whose rank is known (`permute(0, 2, 1)`, `transpose(1, 2)` of a 3-D tensor). */
function swapsLastTwo(op: Op, view: MethodView): boolean {
  const nums = op.args.slice(1).map((a) => (a.k === 'const' && typeof a.v === 'number' ? a.v : undefined));
  if (nums.some((n) => n === undefined)) return false;
  const x = op.args[0];
  if (op.callee === 'permute') {
    const n = nums.length;
    return n >= 2 && nums.every((d, i) => d === (i < n - 2 ? i : i === n - 2 ? n - 1 : n - 2));
  }
  if (op.callee !== 'transpose' || nums.length !== 2) return false;
  const rank = x?.k === 'ssa' ? view.rank.get(x.id) : undefined;
  const norm = nums.map((d) => (d! < 0 && rank !== undefined ? d! + rank : d!)).sort((a, b) => a - b);
  if (nums[0] === -2 && nums[1] === -1) return true;
  return rank !== undefined && norm[0] === rank - 2 && norm[1] === rank - 1;
}
