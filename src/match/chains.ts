// An nn.Sequential is a chain of calls the code never writes out: its elements, called one after
// another on `input`, as views the rules match like any method (Conv→BN pairs inside one).
import type { Expr, FileIR, ModuleIR, Op } from '../dsl/ir.js';
import { layerClassOf, sequentialArgs } from '../analysis/layer-class.js';
import { typeName } from '../analysis/classes.js';
import { setupCode } from '../analysis/setup.js';
import { viewOf, type MethodView } from './method.js';

const SEQUENTIAL = /(^|\.)Sequential$/;

/** For each `nn.Sequential(A(...), B(...), ...)` built in a method or function (every element a
 *  constructor call), a view of its elements called in a chain, each op spanning the call. */
export function sequentialChains(view: MethodView): MethodView[] {
  return chainsOfCalls(view, () => true);
}

/** `sequentialChains` of the Sequential calls `keep` picks. */
function chainsOfCalls(view: MethodView, keep: (op: Op) => boolean): MethodView[] {
  const out: MethodView[] = [];
  for (const op of view.ops) {
    if (op.kind !== 'call' || !SEQUENTIAL.test(op.callee) || op.kw.length || !keep(op)) continue;
    const args = sequentialArgs(op.args);
    if (args.length < 2) continue;
    // an element built elsewhere (a value chosen by an `if`) is a module of unknown class; a
    // layer class chosen by a parameter is its default class
    const items = args.map((a) => (a.k === 'ssa' ? view.defs.get(a.id) : undefined));
    const typeOf = (d: Op | undefined) => (d && (d.kind === 'call' || d.type) && (d.span.file ?? '') === (op.span.file ?? '') ? d.type?.[0] ?? d.callee : '?');
    const types = items.map(typeOf);
    if (types.filter((t) => t !== '?').length < 2) continue;
    const body = chainOf(types, op.span, (i) => -(op.id * 1000 + i + 1), (i) => `${op.callee}(...)[${i}]`, op.via ? { via: op.via, site: op.site } : {});
    out.push(viewOf(view.file, { ...view.method, params: [{ name: 'input' }], body }, view.module));
  }
  return out;
}

/** For each `self.x = nn.Sequential(...)` of a module's own __init__ (in its own file): a view of
 *  its elements called in a chain, spanning the assignment, so a pair inside it is a site even
 *  where forward calls the attribute through a choice the chain of one branch cannot follow. */
export function attributeChains(file: FileIR, module: ModuleIR): MethodView[] {
  const out: MethodView[] = handedChains(file, module);
  for (const a of module.attrs) {
    if (a.from || a.span.file || a.built?.file || a.value.k !== 'call' || !SEQUENTIAL.test(a.value.callee) || a.value.kw.length) continue;
    const items = sequentialArgs(a.value.args);
    const types = items.map((x) => layerClassOf(x, a.defaults) ?? typeName(x));
    if (types.filter((t) => t !== '?').length < 2) continue;
    const span = a.built ?? a.span;
    const body = chainOf(types, span, (i) => -(1_000_000 + span.start * 100 + i), (i) => `self.${a.name}[${i}]`);
    out.push(viewOf(file, { name: '__init__', params: [{ name: 'input' }], body, span }, module));
  }
  return out;
}

/** The nn.Sequential calls of a module's own __init__ that no attribute holds as itself: one handed
 *  to another module's constructor (`ds = nn.Sequential(conv1x1(...), nn.BatchNorm2d(...))` given
 *  to a ResNet block as its downsample) or nested in another Sequential. Whoever calls it runs
 *  its chain, so a pair inside it is a site at the call, found in __init__ as lowered for setup
 *  rules; only for a module whose attributes hold such a call, as lowering __init__ costs. A
 *  Sequential an attribute takes is that attribute's chain, and one a helper builds is found in
 *  the helper. */
function handedChains(file: FileIR, module: ModuleIR): MethodView[] {
  if (!module.attrs.some((a) => !a.from && !a.span.file && holdsSequential(a.value, false))) return [];
  const init = setupCode(file, ['Sequential']).find((u) => u.module === module && u.method.name === '__init__');
  if (!init) return [];
  const view = viewOf(file, init.method, module);
  // the values `self.x = v` stores, through the phis of the branches that choose v
  const held = new Set<number>();
  const hold = (e: Expr | undefined) => {
    if (e?.k !== 'ssa' || held.has(e.id)) return;
    held.add(e.id);
    view.phis.get(e.id)?.forEach(hold);
  };
  for (const op of view.ops) if (op.kind === 'op' && op.callee === 'setattr' && op.args[0]?.k === 'name' && op.args[0].path === 'self') hold(op.args[2]);
  return chainsOfCalls(view, (op) => !op.via?.length && !op.span.file && !held.has(op.id));
}

/** Whether a value of __init__ holds, below its top when not `inner`, an nn.Sequential call of
 *  two layers or more built in place (a chain may be found in it). */
function holdsSequential(e: Expr, inner: boolean): boolean {
  switch (e.k) {
    case 'call': {
      if (inner && SEQUENTIAL.test(e.callee) && sequentialArgs(e.args).filter((x) => x.k === 'call').length >= 2) return true;
      return [...e.args, ...e.kw.map(([, v]) => v)].some((x) => holdsSequential(x, true));
    }
    case 'list': case 'tuple': return e.items.some((x) => holdsSequential(x, true));
    case 'dict': return e.items.some(([, v]) => holdsSequential(v, true));
    case 'star': return holdsSequential(e.e, true);
    case 'comp': return holdsSequential(e.elt, true);
    default: return false;
  }
}

/** Modules of the given classes called one after another on `input`: a Sequential's elements as
 *  the dataflow chain rules match. */
function chainOf(types: string[], span: Op['span'], idOf: (i: number) => number, calleeOf: (i: number) => string, extra: Partial<Op> = {}): Op[] {
  const body: Op[] = [];
  let cur: Expr = { k: 'name', path: 'input' };
  types.forEach((t, i) => {
    const id = idOf(i);
    body.push({ k: 'op', id, kind: 'module', callee: calleeOf(i), args: [cur], kw: [], type: [t], span, ...extra });
    cur = { k: 'ssa', id };
  });
  return body;
}
