// Layer factories: project functions that choose a layer class or build a layer from their
// arguments, as timm's `get_norm_act_layer(norm_layer, act_layer)` (a BatchNorm2d default becomes
// BatchNormAct2d through a name-keyed table) and `create_conv2d(...)` (nn.Conv2d, or a padded,
// mixed or conditional convolution, chosen from the arguments). The function's body is run over
// a small abstract domain: classes, strings, numbers, None, tables and sets of them. A condition
// it cannot decide runs both ways, so the result is the set of classes the factory may give.
// A rewrite that relies on one of them checks the class actually built at run time
// (`_adopt.built_as`), so an answer here only decides where to look, never what runs.
import type { SyntaxNode } from '../parse/python.js';
import { isClassName } from './layer-class.js';
import type { Resolver } from './resolve.js';
import { dottedOf, literal, notComment } from './static.js';
import { field, paramNames, type FileSymbols } from './symbols.js';
import { factoryExpr, truth, type Val } from './layer-factory-ops.js';

export type { Val } from './layer-factory-ops.js';

const MAX_CALL_DEPTH = 3;
const MAX_PATHS = 32;

interface State { env: Map<string, Val | undefined>; ret?: Val | undefined; done: boolean }

/** Evaluation of one function's body: its file, and the module-level values met so far. */
export interface FactoryCtx { resolver: Resolver; syms: FileSymbols; depth: number; globals: Map<string, Val | undefined> }

class Unsupported extends Error {}

/**
 * The classes a call of the project function `qual` may give, with the given argument values
 * (undefined: not known). `want` says whether the call gives a class (`get_norm_act_layer`)
 * or a module built from one (`create_conv2d`). Undefined when the function is not one the
 * evaluator can run (loops, unknown statements) or gives nothing of that kind.
 */
export function factoryClasses(resolver: Resolver, qual: string, args: (Val | undefined)[], kw: [string, Val | undefined][], want: 'class' | 'inst', depth = 0): string[] | undefined {
  const out = factoryOutcomes(resolver, qual, args, kw, depth);
  if (!out) return undefined;
  const classes = new Set<string>();
  for (const v of out.flatMap(flatten)) {
    if (want === 'class' && (v.k === 'class' || v.k === 'partial')) classes.add(v.k === 'class' ? v.qual : v.cls);
    else if (want === 'inst' && v.k === 'inst') classes.add(v.cls);
  }
  return classes.size ? [...classes] : undefined;
}

/** The one class a rewrite may rely on among a factory's possible results: the only one, or
 *  else the only standard torch layer among them (the other results are the factory's
 *  specialisations, which the run-time class check sends to the original code). */
export function chosenClass(classes: string[] | undefined): string | undefined {
  if (!classes?.length) return undefined;
  if (classes.length === 1) return classes[0];
  const torch = classes.filter((c) => c.startsWith('torch.nn.'));
  return torch.length === 1 ? torch[0] : undefined;
}

function flatten(v: Val | undefined): Val[] {
  if (!v) return [];
  return v.k === 'alts' ? v.items.flatMap(flatten) : [v];
}

/** The possible return values of a call of `qual`; undefined when it cannot be run. */
export function factoryOutcomes(resolver: Resolver, qual: string, args: (Val | undefined)[], kw: [string, Val | undefined][], depth: number): (Val | undefined)[] | undefined {
  if (depth > MAX_CALL_DEPTH) return undefined;
  const r = resolver.resolveQual(qual);
  if (r.k !== 'function' || r.def.owner) return undefined;
  const syms = resolver.symbolsOf(r.def.module);
  const body = field(r.def.node, 'body');
  if (!syms || !body) return undefined;
  const ctx: FactoryCtx = { resolver, syms, depth, globals: new Map() };
  const env = bindParams(ctx, r.def.node, args, kw);
  try {
    const states = block(ctx, body.namedChildren.filter(notComment), [{ env, done: false }]);
    // falling off the end returns None
    return states.map((s) => (s.done ? s.ret : { k: 'none' }));
  } catch (e) {
    if (e instanceof Unsupported) return undefined;
    throw e;
  }
}

function bindParams(ctx: FactoryCtx, fn: SyntaxNode, args: (Val | undefined)[], kw: [string, Val | undefined][]): Map<string, Val | undefined> {
  const env = new Map<string, Val | undefined>();
  const given = new Map(kw);
  let pos = 0;
  for (const p of (field(fn, 'parameters')?.namedChildren ?? []).filter(notComment)) {
    const [name] = paramNames(p);
    if (!name) continue;
    if (p.type === 'dictionary_splat_pattern') {
      // the keyword arguments no parameter took; a `**splat` at the call adds keys not known
      env.set(name, { k: 'dict', m: new Map([...given].map(([k, v]) => [JSON.stringify(k), v])), open: given.has('**') });
      continue;
    }
    if (p.type === 'list_splat_pattern') { env.set(name, undefined); pos = Infinity; continue; }
    let v: Val | undefined;
    if (pos < args.length) v = args[pos++];
    else if (given.has(name)) v = given.get(name);
    else {
      const d = field(p, 'value');
      v = d ? expr(ctx, d, new Map()) : undefined;
    }
    given.delete(name);
    env.set(name, v);
  }
  return env;
}

function block(ctx: FactoryCtx, stmts: SyntaxNode[], states: State[]): State[] {
  for (const stmt of stmts) {
    states = states.flatMap((s) => (s.done ? [s] : statement(ctx, stmt, s)));
    if (states.length > MAX_PATHS) throw new Unsupported();
  }
  return states;
}

function statement(ctx: FactoryCtx, stmt: SyntaxNode, s: State): State[] {
  switch (stmt.type) {
    case 'pass_statement': return [s];
    case 'return_statement': {
      const e = stmt.namedChildren.find(notComment);
      return [{ ...s, ret: e ? expr(ctx, e, s.env) : { k: 'none' }, done: true }];
    }
    case 'raise_statement': return [];
    case 'assert_statement': {
      const c = stmt.namedChildren.find(notComment);
      return c && truth(expr(ctx, c, s.env)) === false ? [] : [s];
    }
    case 'if_statement': return ifStatement(ctx, stmt, s);
    case 'expression_statement': {
      const e = stmt.namedChildren[0];
      if (!e || e.type === 'string') return [s];
      if (e.type === 'assignment') { assign(ctx, e, s); return [s]; }
      // a method call on a local table (`kwargs.setdefault(...)`) updates it; its value is dropped
      if (e.type === 'call') { expr(ctx, e, s.env); return [s]; }
      throw new Unsupported();
    }
    default: throw new Unsupported();
  }
}

function ifStatement(ctx: FactoryCtx, stmt: SyntaxNode, s: State): State[] {
  const branches: { cond?: SyntaxNode; body: SyntaxNode | null }[] = [{ cond: field(stmt, 'condition')!, body: field(stmt, 'consequence') }];
  for (const alt of stmt.namedChildren) {
    if (alt.type === 'elif_clause') branches.push({ cond: field(alt, 'condition')!, body: field(alt, 'consequence') });
    else if (alt.type === 'else_clause') branches.push({ body: field(alt, 'body') });
  }
  const out: State[] = [];
  let rest: State | undefined = s;
  for (const b of branches) {
    if (!rest) break;
    const t = b.cond ? truth(expr(ctx, b.cond, rest.env)) : true;
    const run = (st: State) => block(ctx, (b.body?.namedChildren ?? []).filter(notComment), [st]);
    if (t === true) { out.push(...run(rest)); rest = undefined; }
    else if (t === undefined) { out.push(...run(fork(rest))); rest = fork(rest); }
  }
  if (rest) out.push(rest);
  return out;
}

function fork(s: State): State {
  const env = new Map<string, Val | undefined>();
  for (const [k, v] of s.env) env.set(k, v?.k === 'dict' ? { ...v, m: new Map(v.m) } : v);
  return { env, done: s.done, ret: s.ret };
}

function assign(ctx: FactoryCtx, e: SyntaxNode, s: State): void {
  const left = field(e, 'left');
  const right = field(e, 'right');
  if (!left || !right) throw new Unsupported();
  const v = expr(ctx, right, s.env);
  if (left.type === 'identifier') { s.env.set(left.text, v); return; }
  if (left.type === 'pattern_list' || left.type === 'tuple_pattern') {
    const names = left.namedChildren.filter(notComment);
    if (!names.every((x) => x.type === 'identifier')) throw new Unsupported();
    names.forEach((x, i) => s.env.set(x.text, v?.k === 'coll' && v.items.length === names.length ? v.items[i] : undefined));
    return;
  }
  if (left.type === 'subscript') {
    const base = field(left, 'value');
    const table = base?.type === 'identifier' ? s.env.get(base.text) : undefined;
    const key = left.namedChildren.filter(notComment)[1];
    const k = key ? expr(ctx, key, s.env) : undefined;
    if (table?.k === 'dict' && k && (k.k === 'str' || k.k === 'num')) { table.m.set(JSON.stringify(k.v), v); return; }
    if (base?.type === 'identifier') { s.env.set(base.text, undefined); return; }
  }
  throw new Unsupported();
}

/** An expression's value; undefined when not known. */
export function expr(ctx: FactoryCtx, n: SyntaxNode, env: Map<string, Val | undefined>): Val | undefined {
  const lit = literal(n);
  if (lit?.k === 'const') {
    const v = lit.v;
    if (v === null) return { k: 'none' };
    if (typeof v === 'boolean') return { k: 'bool', v };
    if (typeof v === 'number') return { k: 'num', v };
    if (typeof v === 'string') return { k: 'str', v };
    return undefined;
  }
  if (n.type === 'identifier') return env.has(n.text) ? env.get(n.text) : global(ctx, n.text);
  if (n.type === 'attribute') {
    const obj = field(n, 'object')!;
    const attr = field(n, 'attribute')!.text;
    const base = obj.type === 'identifier' && env.has(obj.text) ? env.get(obj.text) : undefined;
    if (base?.k === 'class' && attr === '__name__') return { k: 'str', v: base.qual.split('.').pop()! };
    if (env.has(dottedOf(n)?.split('.')[0] ?? '')) return undefined;
    const d = dottedOf(n);
    return d ? named(ctx, d) : undefined;
  }
  return factoryExpr(ctx, n, env, {
    expr, named: (d) => named(ctx, d), isValue: (name) => ctx.syms.bindings.get(name)?.k === 'value',
    call: (qual, args, kw) => {
      const out = factoryOutcomes(ctx.resolver, qual, args, kw, ctx.depth + 1);
      // a path whose result is not known adds nothing the run-time class check would not catch
      const items = (out ?? []).filter((v): v is Val => v !== undefined);
      if (!items.length) return undefined;
      return items.length === 1 ? items[0] : { k: 'alts', items };
    },
  });
}

/** A module-level name of the function's file. */
function global(ctx: FactoryCtx, name: string): Val | undefined {
  if (ctx.globals.has(name)) return ctx.globals.get(name);
  const b = ctx.syms.bindings.get(name);
  let v: Val | undefined;
  if (b?.k === 'value') {
    ctx.globals.set(name, undefined);
    v = expr(ctx, b.node, new Map());
  } else if (b) v = named(ctx, name);
  // a name no binding explains (a star import): a class by its spelling, told apart from others
  // by its name only
  else v = /^[A-Z]/.test(name) ? { k: 'class', qual: name, loose: true } : { k: 'ext', qual: name };
  ctx.globals.set(name, v);
  return v;
}

/** A dotted name as the file sees it: a class, a project function, or an outside name. */
function named(ctx: FactoryCtx, dotted: string): Val {
  const [head, ...rest] = dotted.split('.');
  const r = ctx.resolver.resolveName(ctx.syms, head);
  const qual = r ? [r.k === 'class' || r.k === 'function' ? r.def.qual : r.qual, ...rest].join('.') : dotted;
  const deep = rest.length ? ctx.resolver.resolveQual(qual) : r;
  if (deep?.k === 'class') return { k: 'class', qual: deep.def.qual };
  if (deep?.k === 'function') return { k: 'func', qual: deep.def.qual };
  return isClassName(ctx.resolver, qual) ? { k: 'class', qual } : { k: 'ext', qual };
}
