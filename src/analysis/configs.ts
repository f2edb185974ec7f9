// Literal defaults of configuration classes defined in the project: a module's constructor often
// reads `config.bias`, and whether that is False unless the user says otherwise decides whether a
// rule's precondition ("the Linear has a bias") holds for the model as shipped.
import type { Expr } from '../dsl/ir.js';
import type { SyntaxNode } from '../parse/python.js';
import type { Resolver } from './resolve.js';
import { dottedOf, literal, qualify } from './static.js';
import { field, paramNames, type ClassDef, type FileSymbols } from './symbols.js';

const MAX_BASES = 8;

/** Field name → literal default of a configuration class: dataclass-style `bias: bool = False`
 *  in the class body, or `self.bias = bias` in its `__init__` with `bias=False`; base classes
 *  defined in the project first, overridden by the class itself. */
export function configDefaults(def: ClassDef, syms: FileSymbols, resolver: Resolver, depth = 0): Map<string, Expr> {
  // every configuration class of a model file derives from the same base (PretrainedConfig),
  // whose long constructor is read once per depth it is met at, not once per class
  let byDepth = defaultsAtDepth.get(def);
  if (!byDepth) defaultsAtDepth.set(def, (byDepth = new Map()));
  let out = byDepth.get(depth);
  if (!out) byDepth.set(depth, (out = readDefaults(def, syms, resolver, depth)));
  return out;
}

/** A class's defaults as configDefaults found them at a depth of the base-class walk; the maps
 *  are only read. */
const defaultsAtDepth = new WeakMap<ClassDef, Map<number, Map<string, Expr>>>();

function readDefaults(def: ClassDef, syms: FileSymbols, resolver: Resolver, depth: number): Map<string, Expr> {
  const out = new Map<string, Expr>();
  if (depth < MAX_BASES) {
    for (const b of def.baseNodes) {
      const d = dottedOf(b);
      const r = d ? resolver.resolveQual(qualify({ syms, resolver }, d)) : undefined;
      const bsyms = r?.k === 'class' ? resolver.symbolsOf(r.def.module) : undefined;
      if (r?.k === 'class' && bsyms) for (const [k, v] of configDefaults(r.def, bsyms, resolver, depth + 1)) out.set(k, v);
    }
  }
  for (const stmt of field(def.node, 'body')?.namedChildren ?? []) {
    const a = stmt.type === 'expression_statement' ? stmt.namedChildren[0] : undefined;
    if (a?.type !== 'assignment') continue;
    const [left, right] = [field(a, 'left'), field(a, 'right')];
    const v = right ? constOf(right) : undefined;
    if (left?.type === 'identifier' && v !== undefined) out.set(left.text, v);
  }
  const init = def.methods.get('__init__');
  if (init) {
    const params = new Map<string, Expr>();
    for (const p of field(init.node, 'parameters')?.namedChildren ?? []) {
      const value = field(p, 'value');
      const v = value ? constOf(value) : undefined;
      const [name] = paramNames(p);
      if (name && v !== undefined) params.set(name, v);
    }
    for (const stmt of field(init.node, 'body')?.namedChildren ?? []) {
      const a = stmt.type === 'expression_statement' ? stmt.namedChildren[0] : undefined;
      if (a?.type !== 'assignment') continue;
      const [left, right] = [field(a, 'left'), field(a, 'right')];
      if (left?.type !== 'attribute' || field(left, 'object')?.text !== 'self' || !right) continue;
      const name = field(left, 'attribute')!.text;
      const v = right.type === 'identifier' ? params.get(right.text) : constOf(right);
      if (v !== undefined) out.set(name, v);
      else out.delete(name);
    }
  }
  return out;
}

function constOf(node: SyntaxNode): Expr | undefined {
  const e = literal(node);
  return e?.k === 'const' ? e : undefined;
}

/** For each annotated parameter of a constructor whose class is a project class: its name →
 *  the class's field defaults (`config: FalconConfig`). */
export function annotatedConfigs(init: SyntaxNode, syms: FileSymbols, resolver: Resolver): Map<string, Map<string, Expr>> {
  const out = new Map<string, Map<string, Expr>>();
  for (const p of field(init, 'parameters')?.namedChildren ?? []) {
    if (p.type !== 'typed_parameter' && p.type !== 'typed_default_parameter') continue;
    const [name] = paramNames(p);
    const type = field(p, 'type');
    const d = type ? dottedOf(type.namedChildren[0] ?? type) : undefined;
    if (!name || !d) continue;
    const r = resolver.resolveQual(qualify({ syms, resolver }, d));
    const csyms = r.k === 'class' ? resolver.symbolsOf(r.def.module) : undefined;
    if (r.k !== 'class' || !csyms || r.def.methods.has('forward')) continue;
    const defaults = configDefaults(r.def, csyms, resolver);
    if (defaults.size) out.set(name, defaults);
  }
  return out;
}

/** The configuration fields an expression reads that have a default: `[["config.bias", False]]`. */
export function defaultsRead(value: Expr, configs: Map<string, Map<string, Expr>>): [string, Expr][] {
  const out = new Map<string, Expr>();
  const visit = (e: Expr): void => {
    switch (e.k) {
      case 'name': {
        const [base, fieldName, ...rest] = e.path.split('.');
        const v = rest.length === 0 && fieldName ? configs.get(base)?.get(fieldName) : undefined;
        if (v !== undefined) out.set(e.path, v);
        break;
      }
      case 'tuple': case 'list': e.items.forEach(visit); break;
      case 'dict': e.items.forEach(([k, v]) => { visit(k); visit(v); }); break;
      case 'slice': [e.lo, e.hi, e.step].forEach((x) => x && visit(x)); break;
      case 'star': visit(e.e); break;
      case 'call': e.args.forEach(visit); e.kw.forEach(([, v]) => visit(v)); break;
      case 'index': visit(e.base); visit(e.index); break;
      case 'comp': visit(e.elt); visit(e.iter); break;
      default: break;
    }
  };
  visit(value);
  return [...out];
}
