// Layer classes passed as parameters: `norm_layer: Type[nn.Module] = nn.BatchNorm2d`,
// `norm_layer = norm_layer or nn.BatchNorm2d`, `partial(nn.BatchNorm2d, eps=1e-3)`,
// `if norm_layer is None: norm_layer = nn.BatchNorm2d`. What such a name builds is its default
// class unless a caller passes another, so the class is known only as a default: the IR records
// it beside the call (`defaults norm_layer=torch.nn.BatchNorm2d`) and a rewrite that relies on it
// checks the class actually built at run time.
import type { Expr } from '../dsl/ir.js';
import type { Resolver } from './resolve.js';

const MAX_DEPTH = 8;

/** Whether a qualified name is a class: a project class, or an outside name whose last part is
 *  capitalised (`torch.nn.BatchNorm2d`). */
export function isClassName(resolver: Resolver, qual: string): boolean {
  const r = resolver.resolveQual(qual);
  if (r.k === 'class') return true;
  return r.k === 'external' && /^[A-Z]/.test(qual.split('.').pop() ?? '');
}

/**
 * The class a callable expression builds by default: a class name, a parameter whose default is
 * one, `a or b` (the first that has a class), `functools.partial(C, ...)`, `A if flag else B` by
 * the flag's default, `f(x)` for a function
 * that hands back what it is given. Undefined when it is not a class known this way.
 */
export function defaultClassOf(e: Expr, paramDefault: (name: string) => Expr | undefined, isClass: (qual: string) => boolean,
  depth = 0, passesThrough: (callee: string) => boolean = () => false, chooses: ClassChooser = () => undefined): string | undefined {
  if (depth > MAX_DEPTH) return undefined;
  const rec = (x: Expr) => defaultClassOf(x, paramDefault, isClass, depth + 1, passesThrough, chooses);
  if (e.k === 'name') {
    const d = paramDefault(e.path);
    if (d) return rec(d);
    return isClass(e.path) ? e.path : undefined;
  }
  if (e.k !== 'call') return undefined;
  if (e.callee === 'or' && e.args.length === 2) return rec(e.args[0]) ?? rec(e.args[1]);
  // `partial(nn.Conv2d, kernel_size=1) if use_conv else nn.Linear`: the branch the flag's default takes
  if (e.callee === 'ifexp' && e.args.length === 3 && e.args[0].k === 'name') {
    const flag = paramDefault(e.args[0].path);
    if (flag?.k === 'const') return rec(flag.v ? e.args[1] : e.args[2]);
  }
  if (/(^|\.)partial$/.test(e.callee) && e.args[0] && e.args[0].k !== 'star') return rec(e.args[0]);
  if (e.args.length === 1 && e.args[0].k !== 'star' && passesThrough(e.callee)) return rec(e.args[0]);
  // `get_norm_act_layer(norm_layer, act_layer)`: the class a factory chooses from its arguments' defaults
  if (!e.args.some((a) => a.k === 'star')) return chooses(e.callee, e.args.map((a) => rec(a)), e.kw.map(([k, v]) => [k, rec(v)]));
  return undefined;
}

/** The class a project function gives for arguments of these default classes (undefined: not
 *  a class, or not known). */
export type ClassChooser = (callee: string, args: (string | undefined)[], kw: [string, string | undefined][]) => string | undefined;

/** The class a layer expression names: `C`, or `functools.partial(C, ...)`. */
export function classOfDefault(e: Expr): string | undefined {
  if (e.k === 'name') return e.path;
  if (e.k === 'call' && /(^|\.)partial$/.test(e.callee) && e.args[0]?.k === 'name') return e.args[0].path;
  return undefined;
}

/** A module's class where it is built by calling a name whose default class is recorded. */
export function layerClassOf(value: Expr, defaults: [string, Expr][] | undefined): string | undefined {
  return value.k === 'call' ? classOfParam(value.callee, defaults) : undefined;
}

/** The class an attribute holds when its value is a layer class chosen by a parameter
 *  (`self._norm_layer = norm_layer`). */
export function heldClassOf(value: Expr, defaults: [string, Expr][] | undefined): string | undefined {
  const param = heldParam(value);
  return param ? classOfParam(param, defaults) : undefined;
}

/** The class a parameter's recorded default names. */
function classOfParam(param: string, defaults: [string, Expr][] | undefined): string | undefined {
  const d = defaults?.find(([k]) => k === param)?.[1];
  return d ? classOfDefault(d) : undefined;
}

/** The parameter a class-valued expression reads: `norm_layer`, `norm_layer or nn.BatchNorm2d`. */
export function heldParam(value: Expr): string | undefined {
  if (value.k === 'name') return value.path.includes('.') ? undefined : value.path;
  if (value.k === 'call' && value.callee === 'or' && value.args[0]?.k === 'name' && !value.args[0].path.includes('.')) return value.args[0].path;
  return undefined;
}

/** The elements of `nn.Sequential(a, b)`, `nn.Sequential(*[a, b])` and
 *  `nn.Sequential(OrderedDict([("a", a), ("b", b)]))`, in order; the arguments as they are
 *  otherwise. */
export function sequentialArgs(args: Expr[]): Expr[] {
  if (args.length === 1 && args[0].k === 'star' && !args[0].double && (args[0].e.k === 'list' || args[0].e.k === 'tuple')) return args[0].e.items;
  const [only] = args;
  if (args.length === 1 && only.k === 'call' && /(^|\.)OrderedDict$/.test(only.callee) && only.args.length === 1 && !only.kw.length) {
    const pairs = only.args[0];
    if ((pairs.k === 'list' || pairs.k === 'tuple') && pairs.items.every((p) => p.k === 'tuple' && p.items.length === 2)) {
      return pairs.items.map((p) => (p as { items: Expr[] }).items[1]);
    }
  }
  return args;
}
