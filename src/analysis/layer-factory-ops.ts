// The abstract values of layer-factory evaluation (layer-factory.ts) and the operations on them:
// calls, comparisons, tables, sets and strings. Anything not modelled is unknown (undefined).
import type { SyntaxNode } from '../parse/python.js';
import { comparisonParts, dottedOf, notComment } from './static.js';
import { field } from './symbols.js';

export type Val =
  /** A class; `loose` when only its spelling is known (a star import). */
  | { k: 'class'; qual: string; loose?: boolean }
  /** A module built by calling a class. */
  | { k: 'inst'; cls: string }
  /** `functools.partial(cls, ...)`. */
  | { k: 'partial'; cls: string }
  | { k: 'func'; qual: string }
  /** Any other outside name (`types.FunctionType`, `str`, `isinstance`). */
  | { k: 'ext'; qual: string }
  | { k: 'str'; v: string }
  | { k: 'num'; v: number }
  | { k: 'bool'; v: boolean }
  | { k: 'none' }
  /** A table keyed by JSON of the key; `open` when keys not known may be in it. */
  | { k: 'dict'; m: Map<string, Val | undefined>; open?: boolean }
  | { k: 'coll'; items: (Val | undefined)[] }
  /** One of several results of a call whose path could not be decided. */
  | { k: 'alts'; items: Val[] };

type Env = Map<string, Val | undefined>;

export interface Host {
  expr(ctx: unknown, n: SyntaxNode, env: Env): Val | undefined;
  named(dotted: string): Val;
  /** Whether a name is a module-level value of the file (a table), not an import or definition. */
  isValue(name: string): boolean;
  call(qual: string, args: (Val | undefined)[], kw: [string, Val | undefined][]): Val | undefined;
}

export function truth(v: Val | undefined): boolean | undefined {
  if (!v) return undefined;
  switch (v.k) {
    case 'none': return false;
    case 'bool': return v.v;
    case 'num': return v.v !== 0;
    case 'str': return v.v.length > 0;
    case 'dict': return v.m.size > 0 ? true : v.open ? undefined : false;
    case 'coll': return v.items.length > 0;
    case 'alts': return undefined;
    default: return true;
  }
}

const bool = (b: boolean | undefined): Val | undefined => (b === undefined ? undefined : { k: 'bool', v: b });

/** Whether two values are the same object or equal; undefined when not known. */
function same(a: Val | undefined, b: Val | undefined): boolean | undefined {
  if (!a || !b || a.k === 'alts' || b.k === 'alts') return undefined;
  if (a.k === 'class' && b.k === 'class') {
    const last = (q: string) => q.split('.').pop();
    if (a.loose || b.loose) return last(a.qual) === last(b.qual) ? undefined : false;
    return a.qual === b.qual;
  }
  if (a.k !== b.k) return (a.k === 'dict' || a.k === 'coll' || b.k === 'dict' || b.k === 'coll' || a.k === 'inst' || b.k === 'inst') ? undefined : false;
  if (a.k === 'none') return true;
  if ('v' in a && 'v' in b) return a.v === b.v;
  if ((a.k === 'func' || a.k === 'ext') && (b.k === 'func' || b.k === 'ext')) return a.qual === b.qual;
  return undefined;
}

function contains(c: Val | undefined, x: Val | undefined): boolean | undefined {
  if (!c) return undefined;
  if (c.k === 'str' && x?.k === 'str') return c.v.includes(x.v);
  if (c.k === 'dict') {
    if (x && (x.k === 'str' || x.k === 'num') && c.m.has(JSON.stringify(x.v))) return true;
    return c.open ? undefined : x && (x.k === 'str' || x.k === 'num') ? false : undefined;
  }
  if (c.k !== 'coll') return undefined;
  let unknown = false;
  for (const item of c.items) {
    const s = same(item, x);
    if (s) return true;
    if (s === undefined) unknown = true;
  }
  return unknown ? undefined : false;
}

/** `isinstance(v, T)` for the types factories test their arguments against. */
function isInstance(v: Val | undefined, t: Val | undefined): boolean | undefined {
  if (!v || !t) return undefined;
  if (t.k === 'coll') {
    const each = t.items.map((x) => isInstance(v, x));
    return each.some((b) => b === true) ? true : each.every((b) => b === false) ? false : undefined;
  }
  if (t.k !== 'ext' && t.k !== 'class') return undefined;
  const kinds: Record<string, Val['k'][]> = {
    type: ['class'], str: ['str'], bool: ['bool'], int: ['num', 'bool'], float: ['num'], list: ['coll'], tuple: ['coll'], dict: ['dict'],
    'types.FunctionType': ['func'], 'functools.partial': ['partial'],
  };
  const ks = kinds[t.qual];
  if (!ks || v.k === 'alts' || v.k === 'inst' || (v.k === 'coll' && t.qual !== 'list' && t.qual !== 'tuple')) return undefined;
  if (v.k === 'coll') return undefined;
  return ks.includes(v.k);
}

export function factoryExpr(ctx: unknown, n: SyntaxNode, env: Env, host: Host): Val | undefined {
  const rec = (x: SyntaxNode) => host.expr(ctx, x, env);
  const kids = n.namedChildren.filter(notComment);
  switch (n.type) {
    case 'parenthesized_expression': return kids[0] ? rec(kids[0]) : undefined;
    case 'list': case 'tuple': case 'set': return { k: 'coll', items: kids.map(rec) };
    case 'dictionary': {
      const m = new Map<string, Val | undefined>();
      for (const p of kids) {
        const k = p.type === 'pair' ? rec(field(p, 'key')!) : undefined;
        if (!k || (k.k !== 'str' && k.k !== 'num')) return undefined;
        m.set(JSON.stringify(k.v), rec(field(p, 'value')!));
      }
      return { k: 'dict', m };
    }
    case 'not_operator': { const t = truth(rec(field(n, 'argument')!)); return bool(t === undefined ? undefined : !t); }
    case 'boolean_operator': {
      const a = rec(field(n, 'left')!);
      const t = truth(a);
      const isAnd = field(n, 'operator')!.text === 'and';
      if (t === undefined) return undefined;
      return t === isAnd ? rec(field(n, 'right')!) : a;
    }
    case 'conditional_expression': {
      const [a, c, b] = kids;
      const t = truth(rec(c));
      return t === undefined ? undefined : rec(t ? a : b);
    }
    case 'comparison_operator': {
      const parts = comparisonParts(n);
      if (parts.length !== 3) return undefined;
      const [a, op, b] = [rec(parts[0] as SyntaxNode), parts[1] as string, rec(parts[2] as SyntaxNode)];
      const neg = (x: boolean | undefined) => (x === undefined ? undefined : !x);
      switch (op) {
        case 'is': case '==': return bool(same(a, b));
        case 'is not': case '!=': return bool(neg(same(a, b)));
        case 'in': return bool(contains(b, a));
        case 'not in': return bool(neg(contains(b, a)));
        default: return undefined;
      }
    }
    case 'subscript': {
      const base = rec(field(n, 'value')!);
      const idx = kids.slice(1).map(rec);
      return idx.length === 1 ? lookup(base, idx[0]) : undefined;
    }
    case 'set_comprehension': case 'list_comprehension': return comprehension(ctx, n, env, host);
    case 'call': return call(ctx, n, env, host);
    default: return undefined;
  }
}

function lookup(base: Val | undefined, k: Val | undefined, dflt?: Val): Val | undefined {
  if (base?.k === 'dict' && k && (k.k === 'str' || k.k === 'num')) {
    const key = JSON.stringify(k.v);
    if (base.m.has(key)) return base.m.get(key);
    return base.open ? undefined : dflt;
  }
  if (base?.k === 'coll' && k?.k === 'num') return base.items.at(k.v);
  return undefined;
}

/** `{m for n, m in TABLE.items()}` and the like, over a known table or collection. */
function comprehension(ctx: unknown, n: SyntaxNode, env: Env, host: Host): Val | undefined {
  const body = field(n, 'body');
  const clauses = n.namedChildren.filter((c) => c.type === 'for_in_clause' || c.type === 'if_clause');
  if (!body || clauses.length !== 1) return undefined;
  const left = field(clauses[0], 'left')!;
  const src = host.expr(ctx, field(clauses[0], 'right')!, env);
  if (!src || src.k !== 'coll') return undefined;
  const names = left.type === 'identifier' ? [left.text] : left.namedChildren.filter((c) => c.type === 'identifier').map((c) => c.text);
  const items = src.items.map((item) => {
    const inner = new Map(env);
    if (names.length === 1) inner.set(names[0], item);
    else if (item?.k === 'coll' && item.items.length === names.length) names.forEach((nm, i) => inner.set(nm, item.items[i]));
    else return undefined;
    return host.expr(ctx, body, inner);
  });
  return { k: 'coll', items };
}

function args(ctx: unknown, n: SyntaxNode, env: Env, host: Host): { pos: (Val | undefined)[]; kw: [string, Val | undefined][] } {
  const pos: (Val | undefined)[] = [];
  const kw: [string, Val | undefined][] = [];
  for (const a of field(n, 'arguments')?.namedChildren.filter(notComment) ?? []) {
    if (a.type === 'keyword_argument') kw.push([field(a, 'name')!.text, host.expr(ctx, field(a, 'value')!, env)]);
    else if (a.type === 'dictionary_splat') {
      const d = host.expr(ctx, a.namedChildren[0], env);
      if (d?.k === 'dict' && !d.open) for (const [k, v] of d.m) kw.push([JSON.parse(k) as string, v]);
      else kw.push(['**', undefined]);
    } else if (a.type === 'list_splat') pos.push(undefined);
    else pos.push(host.expr(ctx, a, env));
  }
  return { pos, kw };
}

function call(ctx: unknown, n: SyntaxNode, env: Env, host: Host): Val | undefined {
  const fn = field(n, 'function')!;
  const { pos, kw } = args(ctx, n, env, host);
  const d = dottedOf(fn);
  // `x.lower()` on a local value or a computed one; `functools.partial(...)` names an outside function
  if (fn.type === 'attribute' && (!d || env.has(d.split('.')[0]) || host.isValue(d.split('.')[0]))) return method(host.expr(ctx, field(fn, 'object')!, env), field(fn, 'attribute')!.text, pos);
  const callee = d ? (env.has(d) ? env.get(d) : host.named(d)) : undefined;
  if (!callee) return undefined;
  if (callee.k === 'class') return { k: 'inst', cls: callee.qual };
  if (callee.k === 'partial') return { k: 'inst', cls: callee.cls };
  if (callee.k === 'func') return host.call(callee.qual, pos, kw);
  if (callee.k !== 'ext') return undefined;
  switch (callee.qual) {
    case 'isinstance': return bool(isInstance(pos[0], pos[1]));
    case 'dict': return kw.some(([k]) => k === '**') || pos.length ? undefined : { k: 'dict', m: new Map(kw.map(([k, v]) => [JSON.stringify(k), v])) };
    case 'functools.partial': case 'partial': {
      const f = pos[0];
      return f?.k === 'class' ? { k: 'partial', cls: f.qual } : f?.k === 'partial' ? f : undefined;
    }
    default: return undefined;
  }
}

/** Methods of strings and tables: the ones factories use to look a layer up by its name. */
function method(self: Val | undefined, name: string, a: (Val | undefined)[]): Val | undefined {
  if (self?.k === 'str') {
    const strs = a.map((x) => (x?.k === 'str' ? x.v : undefined));
    if (strs.some((x) => x === undefined)) return undefined;
    if (name === 'lower') return { k: 'str', v: self.v.toLowerCase() };
    if (name === 'replace' && strs.length === 2) return { k: 'str', v: self.v.split(strs[0]!).join(strs[1]!) };
    if (name === 'split' && strs.length === 1) return { k: 'coll', items: self.v.split(strs[0]!).map((v) => ({ k: 'str', v })) };
    return undefined;
  }
  if (self?.k !== 'dict') return undefined;
  const entries = () => [...self.m].map(([k, v]) => ({ key: JSON.parse(k) as string | number, v }));
  const keyVal = (k: string | number): Val => (typeof k === 'string' ? { k: 'str', v: k } : { k: 'num', v: k });
  switch (name) {
    case 'get': return lookup(self, a[0], a[1] ?? { k: 'none' });
    case 'items': return self.open ? undefined : { k: 'coll', items: entries().map((e) => ({ k: 'coll', items: [keyVal(e.key), e.v] })) };
    case 'values': return self.open ? undefined : { k: 'coll', items: entries().map((e) => e.v) };
    case 'keys': return self.open ? undefined : { k: 'coll', items: entries().map((e) => keyVal(e.key)) };
    case 'setdefault': case 'pop': {
      const k = a[0];
      if (!k || (k.k !== 'str' && k.k !== 'num')) { self.open = true; self.m.clear(); return undefined; }
      const key = JSON.stringify(k.v);
      const had = self.m.has(key);
      const v = had ? self.m.get(key) : self.open ? undefined : a[1];
      if (name === 'pop') self.m.delete(key);
      else if (!had && !self.open) self.m.set(key, a[1]);
      return v;
    }
    case 'update': {
      const o = a[0];
      if (o?.k === 'dict') { for (const [k, v] of o.m) self.m.set(k, v); if (o.open) self.open = true; } else { self.open = true; self.m.clear(); }
      return { k: 'none' };
    }
    default: return undefined;
  }
}
