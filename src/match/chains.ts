// An nn.Sequential is a chain of calls the code never writes out: its elements, called one after
// another on `input`, as views the rules match like any method (Conv→BN pairs inside one).
import type { Expr, FileIR, ModuleIR, Op } from '../dsl/ir.js';
import { layerClassOf, sequentialArgs } from '../analysis/layer-class.js';
import { typeName } from '../analysis/classes.js';
import { viewOf, type MethodView } from './method.js';

/** For each `nn.Sequential(A(...), B(...), ...)` built in a method or function (every element a
 *  constructor call), a view of its elements called in a chain, each op spanning the call. */
export function sequentialChains(view: MethodView): MethodView[] {
  const out: MethodView[] = [];
  for (const op of view.ops) {
    if (op.kind !== 'call' || !/(^|\.)Sequential$/.test(op.callee) || op.kw.length) continue;
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
  const out: MethodView[] = [];
  for (const a of module.attrs) {
    if (a.from || a.span.file || a.built?.file || a.value.k !== 'call' || !/(^|\.)Sequential$/.test(a.value.callee) || a.value.kw.length) continue;
    const items = sequentialArgs(a.value.args);
    const types = items.map((x) => layerClassOf(x, a.defaults) ?? typeName(x));
    if (types.filter((t) => t !== '?').length < 2) continue;
    const span = a.built ?? a.span;
    const body = chainOf(types, span, (i) => -(1_000_000 + span.start * 100 + i), (i) => `self.${a.name}[${i}]`);
    out.push(viewOf(file, { name: '__init__', params: [{ name: 'input' }], body, span }, module));
  }
  return out;
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
