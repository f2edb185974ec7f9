// Constraints any rule may use: how a matched value is used, which optional lines are present,
// properties of a matched call or its constructor.
import type { Attr, Expr, Op } from '../../dsl/ir.js';
import { attrDefs, attrOf, ctorUnknown, exclusive, phiRead } from '../method.js';
import { brief, line, listed, matchedIds, opOf, presentLines, type ConstraintSpec } from './spec.js';

export const GENERAL_CONSTRAINTS: ConstraintSpec[] = [
  {
    name: 'single_use', args: ['line'], variadic: true,
    doc: "The value of each named line feeds only the next matched line (nothing else sees it).",
    check(args, st, view, cx) {
      const matched = matchedIds(st);
      for (const [a, op] of presentLines(args, st)) {
        // A phi that merges this value with a later matched value is the branch where the
        // pattern does not continue (`if use_bn: x = bn(x)`): on the matched path it is no use.
        const mergesMatched = (id: number) => (view.phis.get(id) ?? []).some((e) => e.k === 'ssa' && matched.has(e.id) && e.id !== op.id);
        // nor is a phi read by nothing, or only by matched ops (`x_rotated` chosen by an `if` and
        // cast on the next matched line): on the matched path it is this value
        const feedsMatched = (id: number) => (view.uses.get(id) ?? []).every((u) => u.k === 'op' && matched.has(u.op.id));
        // one op reading the value twice (`mul(c, c)`) is one use
        const uses = (view.uses.get(op.id) ?? []).filter((u) => !(u.k === 'phi' && (mergesMatched(u.id) || !phiRead(view, u.id) || feedsMatched(u.id))))
          .filter((u, i, all) => u.k !== 'op' || all.findIndex((x) => x.k === 'op' && x.op.id === u.op.id) === i);
        const consumers = uses.filter((u): u is { k: 'op'; op: Op } => u.k === 'op' && matched.has(u.op.id)).map((u) => u.op.id);
        const outside = uses.filter((u) => u.k !== 'op' || (!matched.has(u.op.id) && !consumers.every((c) => exclusive(view, c, u.op.id))));
        if (!outside.length && consumers.length === 1) continue;
        if (uses.length > 1 || outside.length) {
          const u = outside[0] ?? uses[1];
          const where = u?.k === 'op' ? `by ${u.op.callee} at line ${line(u.op)}` : u ? `(${u.k === 'phi' ? 'it flows out of a branch or loop' : u.k === 'return' ? 'it is returned' : 'in a condition'})` : '';
          return `the result of ${cx.said(a)} is also used ${where}`.trim();
        }
      }
      return undefined;
    },
  },
  {
    name: 'not_escaping', args: ['line'], variadic: true,
    doc: "A value computed inside the match is not used outside it.",
    check(args, st, view, cx) {
      const matched = matchedIds(st);
      for (const [a, op] of presentLines(args, st)) {
        const out = (view.uses.get(op.id) ?? []).find((u) => u.k !== 'op' || !matched.has(u.op.id));
        if (out) return `${cx.said(a)} escapes the pattern`;
      }
      return undefined;
    },
  },
  {
    name: 'last_dim', args: ['line'],
    doc: "A softmax/reduction runs over the last dimension: dim=-1, or dim = rank-1 where the rank is known.",
    check(args, st, view) {
      const op = opOf(args[0], st);
      if (!op) return undefined;
      const ctor = op.kind === 'module' ? attrOf(view, op)?.value : undefined;
      const dim = op.kw.find(([k]) => k === 'dim')?.[1] ?? (ctor?.k === 'call' ? ctor.kw.find(([k]) => k === 'dim')?.[1] ?? ctor.args[0] : undefined);
      if (!dim && op.kind === 'module' && ctorUnknown(view, op)) return ctorUnknown(view, op);
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
  },
  {
    name: 'last_dim_at_run_time', args: ['line'],
    doc: "A reduction runs over the last dimension: dim=-1 (or `(-1,)`), or a dim held in an attribute or argument that the rewrite's guard checks (`{m.last_dim_check}`). A tuple of several dims (`(-2, -1)`) reduces over more than the last: refused.",
    check(args, st) {
      const op = opOf(args[0], st);
      if (!op) return undefined;
      const written = op.kw.find(([k]) => k === 'dim')?.[1];
      if (!written) return `${op.callee} at line ${line(op)} has no dim (it reduces over every dimension, not the last)`;
      // a tuple of dims: `(-1,)` is the last dimension; `(-2, -1)` reduces over more than it, which
      // a guard `(-2, -1) == -1` would only turn off for good
      const dims = written.k === 'tuple' || written.k === 'list' ? written.items : [written];
      const text = written.k === 'tuple' || written.k === 'list' ? `(${dims.map(brief).join(', ')}${dims.length === 1 ? ',' : ''})` : brief(written);
      if (dims.length > 1) return `${op.callee} at line ${line(op)} is over dim=${text}: a reduction over more than the last dimension`;
      if (!dims.length) return `${op.callee} at line ${line(op)} is over dim=(): it reduces over every dimension, not the last`;
      const [dim] = dims;
      if (dim.k !== 'const' || dim.v === -1) return dim.k === 'star' ? `${op.callee} at line ${line(op)} is over dims unpacked from a sequence, not known to be the last dimension alone` : undefined;
      return `${op.callee} at line ${line(op)} is over dim=${text}, not the last dimension (-1)`;
    },
  },
  {
    name: 'bias', args: ['line'],
    doc: "A Linear (or Conv) has a bias: the constructor does not say bias=False.",
    check(args, st, view) {
      const op = opOf(args[0], st);
      if (!op) return undefined;
      // a layer __init__ builds in several ways has a bias where any of them gives it one: the
      // kernel checks the layer it is handed at run time, so this only keeps sites worth a call
      const attrs = attrDefs(view, op);
      if (!attrs.some((a) => a.value.k === 'call')) return `the constructor of ${op.callee} is not known statically`;
      const noBias = (attr: Attr): string | undefined => {
        if (attr.value.k !== 'call') return `the constructor of ${op.callee} is not known statically`;
        const b = attr.value.kw.find(([k]) => k === 'bias')?.[1] ?? (attr.value.callee.endsWith('Linear') ? attr.value.args[2] : undefined);
        if (b?.k === 'const' && b.v === false) return `${op.callee} is built with bias=False`;
        // `bias=config.bias` where the configuration class defaults it to False: no bias as shipped
        const dflt = b?.k === 'name' ? attr.defaults?.find(([k]) => k === b.path)?.[1] : undefined;
        if (dflt?.k === 'const' && dflt.v === false) return `${op.callee} is built with bias=${b!.k === 'name' ? b!.path : '?'}, False by default`;
        return undefined;
      };
      const why = attrs.map(noBias);
      return why.every(Boolean) ? why[why.length - 1] : undefined;
    },
  },
  {
    name: 'same_scope', args: [],
    doc: "All matched lines come from the same function body (not split across inlined helpers).",
    check(_args, st) {
      const vias = [...st.ops.values()].filter((o): o is Op => !!o).map((o) => (o.via ?? []).join('>'));
      return new Set(vias).size <= 1 ? undefined : 'the matched lines are split across helper functions';
    },
  },
  {
    name: 'distinct', args: ['line', 'line'], variadic: true,
    doc: "The named lines are different modules (three projections, not one reused).",
    check(args, st) {
      const callees = args.map((a) => opOf(a, st)?.callee).filter(Boolean);
      return new Set(callees).size === callees.length ? undefined : `${callees.join(', ')} are not distinct modules`;
    },
  },
  {
    name: 'no_kw', args: ['line', 'const'], variadic: true,
    doc: "The call does not already pass a keyword (`fused=`, `foreach=`).",
    check(args, st) {
      const op = opOf(args[0], st);
      if (!op) return undefined;
      for (const a of args.slice(1)) {
        const name = a.k === 'const' ? String(a.v) : a.k === 'ref' ? a.name : '';
        if (op.kw.some(([k]) => k === name)) return `${op.callee} already passes ${name}=`;
      }
      return undefined;
    },
  },
  {
    name: 'const', args: ['meta', 'const'],
    doc: "A metavariable is bound to a given constant.",
    check(args, st) {
      const [m, c] = args;
      const v: Expr | undefined = m.k === 'meta' ? st.metas.get(m.name) : undefined;
      if (c.k !== 'const') return undefined;
      return v?.k === 'const' && v.v === c.v ? undefined : `$${m.k === 'meta' ? m.name : '?'} is ${v ? brief(v) : 'unbound'}, not ${JSON.stringify(c.v)}`;
    },
  },
  {
    name: 'together', args: ['line', 'line'], variadic: true,
    doc: "The named optional lines are all present or all absent (a reshape around a mask add only with the add).",
    check(args, st, _view, cx) {
      const present = args.filter((a) => opOf(a, st));
      if (!present.length || present.length === args.length) return undefined;
      const absent = args.filter((a) => !opOf(a, st));
      return `${listed(present.map(cx.said), 'and')} ${present.length > 1 ? 'are' : 'is'} here without ${listed(absent.map(cx.said), 'or')}: the rule takes these optional lines together or not at all`;
    },
  },
  {
    name: 'needs', args: ['line', 'line'], variadic: true,
    doc: "The first named optional line is present only with all the others (a reshape only around a mask add).",
    check(args, st, _view, cx) {
      if (!opOf(args[0], st)) return undefined;
      const missing = args.slice(1).find((a) => !opOf(a, st));
      return missing ? `${cx.said(args[0])} is here without ${cx.said(missing)}, which it needs` : undefined;
    },
  },
  {
    name: 'apart', args: ['line', 'line'], variadic: true,
    doc: "The named optional lines are not both present (scores filled before they are viewed as (batch, heads, L, S) for the mask, where the kernel fills that view).",
    check(args, st, _view, cx) {
      const present = args.filter((a) => !!opOf(a, st));
      return present.length > 1 ? `${listed(present.map(cx.said), 'and')} are ${present.length > 2 ? 'all' : 'both'} here: the rule takes at most one of them` : undefined;
    },
  },
];
