// `where` constraints of rules. Each returns undefined when it holds, else the reason (shown by
// --why-not).
import type { Expr, Op } from '../dsl/ir.js';
import { sameExpr } from '../analysis/lower.js';
import type { State } from './matcher.js';
import { attrOf, exclusive, type MethodView } from './method.js';
import type { Constraint, PatVal } from './rule.js';

type Check = (args: PatVal[], st: State, view: MethodView) => string | undefined;

const opOf = (a: PatVal, st: State): Op | null | undefined => (a.k === 'ref' ? st.ops.get(a.name) : undefined);
const line = (op: Op) => `${op.span.file ? `${op.span.file}:` : ''}${op.span.from.line}`;

const CHECKS: Record<string, Check> = {
  /** The value of each named line feeds only the next matched line (nothing else sees it). */
  single_use(args, st, view) {
    const matched = new Set([...st.ops.values()].filter((o): o is Op => !!o).map((o) => o.id));
    for (const a of args) {
      const op = opOf(a, st);
      if (!op) continue;
      // A phi that merges this value with a later matched value is the branch where the
      // pattern does not continue (`if use_bn: x = bn(x)`): on the matched path it is no use.
      const mergesMatched = (id: number) => (view.phis.get(id) ?? []).some((e) => e.k === 'ssa' && matched.has(e.id) && e.id !== op.id);
      const uses = (view.uses.get(op.id) ?? []).filter((u) => !(u.k === 'phi' && mergesMatched(u.id)));
      const consumers = uses.filter((u): u is { k: 'op'; op: Op } => u.k === 'op' && matched.has(u.op.id)).map((u) => u.op.id);
      const outside = uses.filter((u) => u.k !== 'op' || (!matched.has(u.op.id) && !consumers.every((c) => exclusive(view, c, u.op.id))));
      if (!outside.length && consumers.length === 1) continue;
      if (uses.length > 1 || outside.length) {
        const u = outside[0] ?? uses[1];
        const where = u?.k === 'op' ? `by ${u.op.callee} at line ${line(u.op)}` : u ? `(${u.k === 'phi' ? 'it flows out of a branch or loop' : u.k === 'return' ? 'it is returned' : 'in a condition'})` : '';
        return `the result of '${a.k === 'ref' ? a.name : '?'}' at line ${line(op)} is also used ${where}`.trim();
      }
    }
    return undefined;
  },
  /** A value computed inside the match is not used outside it. */
  not_escaping(args, st, view) {
    const matched = new Set([...st.ops.values()].filter((o): o is Op => !!o).map((o) => o.id));
    for (const a of args) {
      const op = opOf(a, st);
      if (!op) continue;
      const out = (view.uses.get(op.id) ?? []).find((u) => u.k !== 'op' || !matched.has(u.op.id));
      if (out) return `'${a.k === 'ref' ? a.name : '?'}' at line ${line(op)} escapes the pattern`;
    }
    return undefined;
  },
  /** A softmax/reduction runs over the last dimension: dim=-1, or dim = rank-1 where the rank is known. */
  last_dim(args, st, view) {
    const op = opOf(args[0], st);
    if (!op) return undefined;
    const ctor = op.kind === 'module' ? attrOf(view, op)?.value : undefined;
    const dim = op.kw.find(([k]) => k === 'dim')?.[1] ?? (ctor?.k === 'call' ? ctor.kw.find(([k]) => k === 'dim')?.[1] ?? ctor.args[0] : undefined);
    if (!dim) return `${op.callee} at line ${line(op)} has no dim (implicit dim is deprecated and not always last)`;
    if (dim.k === 'const' && dim.v === -1) return undefined;
    if (dim.k === 'const' && typeof dim.v === 'number') {
      const x = op.args[0];
      const rank = x?.k === 'ssa' ? view.rank.get(x.id) : undefined;
      if (rank !== undefined && dim.v === rank - 1) return undefined;
      return `${op.callee} over dim=${dim.raw ?? dim.v}${rank !== undefined ? ` of a rank-${rank} tensor` : ''}: not the last dimension${rank === undefined ? ' (rank unknown)' : ''}`;
    }
    return `${op.callee} dim is ${brief(dim)}, not known to be the last dimension`;
  },
  /** A Linear (or Conv) has a bias: the constructor does not say bias=False. */
  bias(args, st, view) {
    const op = opOf(args[0], st);
    if (!op) return undefined;
    const attr = attrOf(view, op);
    if (!attr || attr.value.k !== 'call') return `the constructor of ${op.callee} is not known statically`;
    const b = attr.value.kw.find(([k]) => k === 'bias')?.[1] ?? (attr.value.callee.endsWith('Linear') ? attr.value.args[2] : undefined);
    if (b?.k === 'const' && b.v === false) return `${op.callee} is built with bias=False`;
    // `bias=config.bias` where the configuration class defaults it to False: no bias as shipped
    const dflt = b?.k === 'name' ? attr.defaults?.find(([k]) => k === b.path)?.[1] : undefined;
    if (dflt?.k === 'const' && dflt.v === false) return `${op.callee} is built with bias=${b!.k === 'name' ? b!.path : '?'}, False by default`;
    return undefined;
  },
  /** All matched lines come from the same function body (not split across inlined helpers). */
  same_scope(_args, st) {
    const vias = [...st.ops.values()].filter((o): o is Op => !!o).map((o) => (o.via ?? []).join('>'));
    return new Set(vias).size <= 1 ? undefined : 'the matched lines are split across helper functions';
  },
  /** The named lines are different modules (three projections, not one reused). */
  distinct(args, st) {
    const callees = args.map((a) => opOf(a, st)?.callee).filter(Boolean);
    return new Set(callees).size === callees.length ? undefined : `${callees.join(', ')} are not distinct modules`;
  },
  /** A Linear projecting onto a vocabulary (an LM head), not onto a few class labels. */
  vocab_projection(args, st, view) {
    const op = opOf(args[0], st);
    if (!op) return undefined;
    const ctor = attrOf(view, op)?.value;
    if (ctor?.k !== 'call') return `the constructor of ${op.callee} is not known statically`;
    const out = ctor.kw.find(([k]) => k === 'out_features')?.[1] ?? ctor.args[1];
    const text = out ? JSON.stringify(out) : '';
    return /vocab|n_?token|n_?vocab/i.test(text) ? undefined : `${op.callee} does not project onto a vocabulary (out_features ${out?.k === 'name' ? out.path : '?'})`;
  },
  /** The call does not already pass a keyword (`fused=`, `foreach=`). */
  no_kw(args, st) {
    const op = opOf(args[0], st);
    if (!op) return undefined;
    for (const a of args.slice(1)) {
      const name = a.k === 'const' ? String(a.v) : a.k === 'ref' ? a.name : '';
      if (op.kw.some(([k]) => k === name)) return `${op.callee} already passes ${name}=`;
    }
    return undefined;
  },
  /** `$a`, `$b` are the first and second halves of `$x`'s last dimension: `x[..., :d // 2]` and
   *  `x[..., d // 2:]` with `d = x.shape[-1]`, or the two results of `x.chunk(2, dim=-1)`. */
  halves(args, st, view) {
    const [a, b, x] = args.map((m) => (m.k === 'meta' ? st.metas.get(m.name) : m.k === 'ref' ? st.vals.get(m.name) : undefined));
    if (!a || !b || !x) return undefined;
    const defOf = (e: Expr) => (e.k === 'ssa' ? view.defs.get(e.id) : undefined);
    const [da, db] = [defOf(a), defOf(b)];
    if (da?.callee !== 'getitem' || db?.callee !== 'getitem') return 'the two halves are not slices of one tensor';
    const base = defOf(da.args[0]);
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
  /** `$o` took its `or` form (`matmul($v, pt)`: the output computed transposed, channels first)
   *  exactly when the optional line `pt` is present, and `pt` exchanges the last two dimensions. */
  transposed_by(args, st, view) {
    const [o, pt] = args.map((a) => (a.k === 'ref' ? a.name : ''));
    const t = st.ops.get(pt);
    const alt = st.forms.has(o);
    if (!t) return alt ? `${o} takes its transposed form without a transposition before it` : undefined;
    if (!alt) return `${pt} at line ${line(t)} transposes the probabilities, but ${o} does not take the transposed form`;
    return swapsLastTwo(t, view) ? undefined : `${t.callee} at line ${line(t)} does not exchange the last two dimensions`;
  },
  /** The named optional lines are all present or all absent (a reshape around a mask add only
   *  with the add). */
  together(args, st) {
    const present = args.map((a) => !!opOf(a, st));
    return present.every((x) => x === present[0]) ? undefined : `${args.map((a) => (a.k === 'ref' ? a.name : '?')).join(', ')} are not all present`;
  },
  /** The named optional lines are not both present (scores filled before they are viewed as
   *  (batch, heads, L, S) for the mask, where the kernel fills that view). */
  apart(args, st) {
    const present = args.filter((a) => !!opOf(a, st));
    return present.length > 1 ? `${present.map((a) => (a.k === 'ref' ? a.name : '?')).join(' and ')} are both present` : undefined;
  },
  /** The first named optional line is present only with all the others (a reshape only around
   *  a mask add). */
  needs(args, st) {
    if (!opOf(args[0], st)) return undefined;
    const missing = args.slice(1).find((a) => !opOf(a, st));
    return missing ? `${args[0].k === 'ref' ? args[0].name : '?'} without ${missing.k === 'ref' ? missing.name : '?'}` : undefined;
  },
  /** `$m` is the maximum of `x` over its last dimension, kept (`x.amax(dim=-1, keepdim=True)`,
   *  possibly detached): subtracting it leaves a softmax unchanged. Holds when `$m` is unbound. */
  row_max(args, st, view) {
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
  /** `$a`, `$b` are the even and odd channels of `$x`'s last indexed dimension (`x[..., ::2]`,
   *  `x[..., 1::2]`, or `x[:, :, :, ::2]` whose rank the rewrite's guard checks). */
  evens_odds(args, st, view) {
    const [a, b, x] = args.map((m) => (m.k === 'meta' ? st.metas.get(m.name) : m.k === 'ref' ? st.vals.get(m.name) : undefined));
    if (!a || !b || !x) return undefined;
    const defOf = (e: Expr) => (e.k === 'ssa' ? view.defs.get(e.id) : undefined);
    const [da, db] = [defOf(a), defOf(b)];
    if (da?.callee !== 'getitem' || db?.callee !== 'getitem' || !sameExpr(da.args[0], x) || !sameExpr(db.args[0], x)) return 'the two halves are not slices of the rotated tensor';
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
  /** No other rotation `x * cos + cat(-x2, x1) * sin` in the same function: the rotation is
   *  applied to one tensor here, not to a q/k pair (which the paired rule takes). */
  no_pair(args, st, view) {
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
  /** A metavariable is bound to a given constant. */
  const(args, st) {
    const [m, c] = args;
    const v: Expr | undefined = m.k === 'meta' ? st.metas.get(m.name) : undefined;
    if (c.k !== 'const') return undefined;
    return v?.k === 'const' && v.v === c.v ? undefined : `$${m.k === 'meta' ? m.name : '?'} is ${v ? brief(v) : 'unbound'}, not ${JSON.stringify(c.v)}`;
  },
};

function constIs(e: Expr | undefined, v: number | string): boolean {
  return e?.k === 'const' && e.v === v;
}

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

function brief(e: Expr): string {
  return e.k === 'const' ? e.raw ?? JSON.stringify(e.v) : e.k === 'name' ? e.path : e.k === 'ssa' ? `%${e.id}` : e.k;
}

export function checkConstraint(c: Constraint, st: State, view: MethodView): string | undefined {
  return CHECKS[c.name](c.args, st, view);
}

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
