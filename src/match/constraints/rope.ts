// Constraints of the rotary-embedding rules (rope, rope_single, rope_interleaved): how the two
// halves of a rotated tensor are taken, and whether a second tensor is rotated beside it.
import type { Expr, Op } from '../../dsl/ir.js';
import { sameExpr } from '../../analysis/lower.js';
import type { MethodView } from '../method.js';
import { constIs, line, opOf, sliceOperands, type ConstraintSpec } from './spec.js';

export const ROPE_CONSTRAINTS: ConstraintSpec[] = [
  {
    name: 'halves', args: ['value', 'value', 'value'], rules: ['rope', 'rope_single'],
    doc: "`$a`, `$b` are the first and second halves of `$x`'s last dimension: `x[..., :d // 2]` and `x[..., d // 2:]` with `d = x.shape[-1]`, or the two results of `x.chunk(2, dim=-1)`.",
    check(args, st, view) {
      const operands = sliceOperands(args, st, view);
      if (!operands) return undefined;
      const { x, a: da, b: db } = operands;
      if (da?.callee !== 'getitem' || db?.callee !== 'getitem') return 'the two halves are not slices of one tensor';
      const base = da.args[0].k === 'ssa' ? view.defs.get(da.args[0].id) : undefined;
      if (sameExpr(da.args[0], db.args[0]) && base?.callee === 'chunk') {
        const chunks = base.kw.find(([k]) => k === 'chunks')?.[1] ?? base.args[1];
        const dim = base.kw.find(([k]) => k === 'dim')?.[1] ?? base.args[2];
        const ok = sameExpr(base.args[0], x) && constIs(chunks, 2) && constIs(dim, -1) && constIs(da.args[1], 0) && constIs(db.args[1], 1);
        return ok ? undefined : `chunk at line ${line(base)} is not chunk(2, dim=-1) of the rotated tensor taken in order`;
      }
      if (!sameExpr(da.args[0], x) || !sameExpr(db.args[0], x)) return 'the halves are not slices of the rotated tensor';
      const [sa, sb] = [lastSlice(da.args[1], view, x), lastSlice(db.args[1], view, x)];
      if (!sa || !sb) return `the slices at line ${line(da)} are not on the last dimension`;
      const half = (e: Expr | null) => !!e && isHalfOfLastDim(e, x, view);
      if (!sa.lo && !sa.step && half(sa.hi) && !sb.hi && !sb.step && half(sb.lo)) return undefined;
      return `the slices at line ${line(da)} do not split the last dimension at its middle (x.shape[-1] // 2)`;
    },
  },
  {
    name: 'evens_odds', args: ['value', 'value', 'value'], rules: ['rope_interleaved'],
    doc: "`$a`, `$b` are the even and odd channels of `$x`'s last indexed dimension (`x[..., ::2]`, `x[..., 1::2]`, or `x[:, :, :, ::2]` whose rank the rewrite's guard checks), or the two results of `x.reshape(*x.shape[:-1], -1, 2).unbind(-1)`. Where `$x` is `x.float()`, the channels may be taken of `x`.",
    check(args, st, view) {
      const operands = sliceOperands(args, st, view);
      if (!operands) return undefined;
      const { a: da, b: db } = operands;
      const sources = [operands.x, ...floatSource(operands.x, view)];
      if (da?.callee !== 'getitem' || db?.callee !== 'getitem') return 'the two halves are not slices of the rotated tensor';
      const unbound = unbindPairs(da, db, view);
      if (unbound) return sources.some((x) => sameExpr(unbound.x, x)) && isPairsShape(unbound.reshape, unbound.x, view) ? undefined : `the reshape at line ${line(unbound.reshape)} is not (*x.shape[:-1], -1, 2) of the rotated tensor: its pairs are not adjacent channels`;
      if (!sameExpr(da.args[0], db.args[0]) || !sources.some((x) => sameExpr(da.args[0], x))) return 'the two halves are not slices of the rotated tensor';
      const slices = (d: Op) => {
        const idx = d.args[1];
        if (idx?.k !== 'tuple') return undefined;
        const last = idx.items[idx.items.length - 1];
        const rest = idx.items.slice(0, -1);
        const lead = rest.every((e) => e.k === 'slice' && !e.lo && !e.hi && !e.step) || (rest.length === 1 && rest[0].k === 'name' && rest[0].path === '...');
        return lead && last?.k === 'slice' ? { last, n: idx.items.length } : undefined;
      };
      const [sa, sb] = [slices(da), slices(db)];
      if (!sa || !sb || sa.n !== sb.n) return `the slices at line ${line(da)} are not on one trailing dimension`;
      const evens = !sa.last.hi && (!sa.last.lo || constIs(sa.last.lo, 0)) && constIs(sa.last.step ?? undefined, 2);
      const odds = !sb.last.hi && constIs(sb.last.lo ?? undefined, 1) && constIs(sb.last.step ?? undefined, 2);
      return evens && odds ? undefined : `the slices at line ${line(da)} are not the even and odd channels (::2 and 1::2)`;
    },
  },
  {
    name: 'pairs_merged', args: ['line', 'value'], rules: ['rope_interleaved'],
    doc: "The stacked pairs are merged back into the last dimension: `flatten(-2)`, `flatten(k)` (the guard checks the rank with `{r.merge_check}`), or `reshape(x.shape)` of the rotated tensor `$x` (or of the `x` that `$x = x.float()` casts).",
    check(args, st, view) {
      const r = opOf(args[0], st);
      const x = args[1].k === 'meta' ? st.metas.get(args[1].name) : undefined;
      if (!r || !x) return undefined;
      if (r.callee === 'flatten') {
        const start = r.kw.find(([k]) => k === 'start_dim')?.[1] ?? r.args[1];
        const ok = r.args.length <= 2 && !r.kw.some(([k]) => k === 'end_dim') && start?.k === 'const' && typeof start.v === 'number' && (start.v === -2 || start.v >= 0);
        return ok ? undefined : `the flatten at line ${line(r)} does not merge the last two dimensions`;
      }
      const shape = r.args.length === 2 && r.args[1].k === 'ssa' ? view.defs.get(r.args[1].id) : undefined;
      const ofX = shape?.callee === 'getattr' && constIs(shape.args[1], 'shape') && [x, ...floatSource(x, view)].some((e) => sameExpr(shape.args[0], e));
      return ofX ? undefined : `the ${r.callee} at line ${line(r)} is not to the rotated tensor's own shape`;
    },
  },
  {
    name: 'casts_alike', args: ['line', 'value', 'value'], rules: ['rope_interleaved'],
    doc: "Both terms run in one precision: where the pairs `$e` are taken of `x` and the tensor `$x` is `x.float()`, the rotated half is cast to float32 too (the optional line); where they are taken of `$x` itself, the rotated half is cast only if `$x` is already float32. The kernel then runs on `$x`.",
    check(args, st, view) {
      const f = opOf(args[0], st);
      const [x, e] = [args[1], args[2]].map((a) => (a.k === 'meta' ? st.metas.get(a.name) : undefined));
      if (!x || !e) return undefined;
      const base = pairsBase(e, view);
      const floated = floatSource(x, view);
      if (base && sameExpr(base, x)) return !f || floated.length ? undefined : `the rotated half is cast to float32 at line ${line(f)} but the tensor it is added to is not`;
      const cast = !!base && floated.some((b) => sameExpr(b, base));
      if (cast === !!f) return undefined;
      return cast ? 'the tensor is cast to float32 but its rotated half is not' : `the rotated half is cast to float32 at line ${line(f!)} but the tensor it is added to is not`;
    },
  },
  {
    name: 'pairs_view', args: ['line', 'value'], rules: ['rope_complex'],
    doc: "A reshape (or view) of `$x` into adjacent pairs of its last dimension, `(*x.shape[:-1], -1, 2)`: the layout `view_as_complex` reads as (real, imaginary).",
    check(args, st, view) {
      const r = opOf(args[0], st);
      const x = args[1].k === 'meta' ? st.metas.get(args[1].name) : undefined;
      if (!r || !x) return undefined;
      if (isPairsShape(r, x, view)) return undefined;
      return `the ${r.callee} at line ${line(r)} is not (*x.shape[:-1], -1, 2): the pairs it forms are not adjacent channels of the last dimension`;
    },
  },
  {
    name: 'no_pair', args: ['line'], rules: ['rope_single'],
    doc: "No other rotation `x * cos + cat(-x2, x1) * sin` in the same function: the rotation is applied to one tensor here, not to a q/k pair (which the paired rule takes).",
    check(args, st, view) {
      const y = opOf(args[0], st);
      if (!y) return undefined;
      const def = (e: Expr | undefined) => (e?.k === 'ssa' ? view.defs.get(e.id) : undefined);
      const rotated = (e: Expr) => {
        const m = def(e);
        return m?.callee === 'mul' && m.args.some((a) => {
          const c = def(a);
          const first = c?.callee === 'cat' && c.args[0]?.k === 'tuple' ? c.args[0].items[0] : undefined;
          return def(first)?.callee === 'neg';
        });
      };
      const other = view.ops.find((o) => o.id !== y.id && o.callee === 'add' && o.args.length === 2 && o.args.some(rotated));
      return other ? `another tensor is rotated at line ${line(other)} (a q/k pair)` : undefined;
    },
  },
];

type SliceExpr = Extract<Expr, { k: 'slice' }>;

/** The slice an index applies to the last dimension when every other dimension is taken whole
 *  (`[..., s]`, or `[:, :, s]` on a tensor of known rank 3). */
function lastSlice(index: Expr, view: MethodView, x: Expr): SliceExpr | undefined {
  if (index.k !== 'tuple') return undefined;
  const items = index.items;
  const last = items[items.length - 1];
  if (last?.k !== 'slice') return undefined;
  const whole = (e: Expr) => e.k === 'slice' && !e.lo && !e.hi && !e.step;
  const rest = items.slice(0, -1);
  if (rest.length === 1 && rest[0].k === 'name' && rest[0].path === '...') return last;
  const rank = x.k === 'ssa' ? view.rank.get(x.id) : undefined;
  return rest.every(whole) && rank === items.length ? last : undefined;
}

/** `x.shape[-1] // 2` or `x.size(-1) // 2`. */
function isHalfOfLastDim(e: Expr, x: Expr, view: MethodView): boolean {
  const def = (v: Expr) => (v.k === 'ssa' ? view.defs.get(v.id) : undefined);
  const div = def(e);
  if (div?.callee !== 'floordiv' || !constIs(div.args[1], 2)) return false;
  const d = def(div.args[0]);
  if (d?.callee === 'size') return sameExpr(d.args[0], x) && constIs(d.args[1] ?? d.kw.find(([k]) => k === 'dim')?.[1], -1);
  if (d?.callee !== 'getitem' || !constIs(d.args[1], -1)) return false;
  const shape = def(d.args[0]);
  return shape?.callee === 'getattr' && sameExpr(shape.args[0], x) && constIs(shape.args[1], 'shape');
}

/** The tensor whose channels an even (or odd) value takes: `x` of `x[..., ::2]` or of
 *  `x.reshape(...).unbind(-1)[0]`. */
function pairsBase(e: Expr, view: MethodView): Expr | undefined {
  const d = e.k === 'ssa' ? view.defs.get(e.id) : undefined;
  if (d?.callee !== 'getitem' || !d.args[0]) return undefined;
  const u = d.args[0].k === 'ssa' ? view.defs.get(d.args[0].id) : undefined;
  if (u?.callee !== 'unbind') return d.args[0];
  const r = u.args[0]?.k === 'ssa' ? view.defs.get(u.args[0].id) : undefined;
  return r?.args[0];
}

/** `x.float()` (or `x.to(torch.float32)`): [x]; otherwise nothing. */
function floatSource(e: Expr, view: MethodView): Expr[] {
  const d = e.k === 'ssa' ? view.defs.get(e.id) : undefined;
  if (d?.callee !== 'to' || d.args.length !== 1) return [];
  const dtype = d.kw.find(([k]) => k === 'dtype')?.[1];
  return dtype?.k === 'name' && dtype.path === 'torch.float32' ? [d.args[0]] : [];
}

/** `a, b = r.unbind(-1)` with `r = reshape|view(x, ...)`: the reshape and its input, when `a` and
 *  `b` are results 0 and 1 of one such unbind. */
function unbindPairs(a: Op, b: Op, view: MethodView): { reshape: Op; x: Expr } | undefined {
  if (a.args[0]?.k !== 'ssa' || !sameExpr(a.args[0], b.args[0]) || !constIs(a.args[1], 0) || !constIs(b.args[1], 1)) return undefined;
  const u = view.defs.get(a.args[0].id);
  const dim = u?.kw.find(([k]) => k === 'dim')?.[1] ?? u?.args[1];
  if (u?.callee !== 'unbind' || !constIs(dim, -1) || u.args[0]?.k !== 'ssa') return undefined;
  const r = view.defs.get(u.args[0].id);
  return r && (r.callee === 'reshape' || r.callee === 'view') && r.args[0] ? { reshape: r, x: r.args[0] } : undefined;
}

/** A reshape (or view) of `x` to `(*x.shape[:-1], -1, 2)`: adjacent channel pairs of the last
 *  dimension. */
function isPairsShape(r: Op, x: Expr, view: MethodView): boolean {
  const shape = r.args.slice(1);
  const def = (e: Expr | undefined) => (e?.k === 'ssa' ? view.defs.get(e.id) : undefined);
  const lead = shape[0]?.k === 'star' ? def(shape[0].e) : undefined;
  const dims = lead?.callee === 'getitem' ? def(lead.args[0]) : undefined;
  const leadOk = !!dims && dims.callee === 'getattr' && constIs(dims.args[1], 'shape') && sameExpr(dims.args[0], x)
    && lead!.args[1]?.k === 'slice' && !lead!.args[1].lo && !lead!.args[1].step && constIs(lead!.args[1].hi ?? undefined, -1);
  return shape.length === 3 && leadOk && constIs(shape[1], -1) && constIs(shape[2], 2);
}
