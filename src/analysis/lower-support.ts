// Shared pieces of method lowering: the environment's value and frame types, the limits, and
// the free functions on syntax and operands that the lowering stages use.
import type { Expr } from '../dsl/ir.js';
import type { SyntaxNode } from '../parse/python.js';
import type { ClassInfo } from './classes.js';
import type { Resolver } from './resolve.js';
import { clip, dottedOf, identifiersOf, qualify } from './static.js';
import { field, type FileSymbols, type FuncDef } from './symbols.js';

export interface Val {
  e: Expr;
  /** Classes of a module value (a submodule, a ModuleList element, a constructed module). */
  types?: string[];
  /** Element classes when the value is a ModuleList/Sequential/ModuleDict attribute. */
  elems?: string[];
  /** A callable the analysis can inline. */
  fn?: { def: FuncDef; selfVal?: Val; defCls?: ClassInfo };
  /** A layer class chosen by a parameter (`norm_layer`, `norm_layer or nn.BatchNorm2d`): the
   *  class it builds unless a caller passes another. */
  cls?: string;
}

export interface Frame {
  syms: FileSymbols;
  /** The class of `self` (attribute lookups) and the class defining the method (super()). */
  selfCls?: ClassInfo;
  defCls?: ClassInfo;
  env: Map<string, Val>;
}

export type Flow = { terminal: null | 'return' | 'raise'; ret?: Expr; retNode?: SyntaxNode };

export const LIMITS = { inlineDepth: 10, opsPerMethod: 20000, exprDepth: 150, blockDepth: 60, inlineMaxLines: 120 };

export const NONE: Expr = { k: 'const', v: null };

export function num(v: number): Expr {
  return { k: 'const', v, raw: String(v) };
}

export function shortName(q: string): string {
  return q.split('.').slice(-2).join('.');
}

export function isTorchScript(decorator: string): boolean {
  return /^torch\.jit\.(script|script_if_tracing)$/.test(decorator);
}

export function decoratorsOf(fn: SyntaxNode, syms: FileSymbols, resolver: Resolver): string[] {
  const parent = fn.parent;
  if (parent?.type !== 'decorated_definition') return [];
  return parent.namedChildren.filter((d) => d.type === 'decorator').map((d) => {
    const expr = d.namedChildren[0];
    const target = expr?.type === 'call' ? field(expr, 'function') : expr;
    const dotted = target ? dottedOf(target) : undefined;
    return dotted ? qualify({ syms, resolver }, dotted) : clip(d.text.replace(/^@/, ''), 60);
  });
}

/** Whether a function is compiled by TorchScript, asked once per function: helpers are met
 *  again at every call site that would inline them. */
export function isTorchScriptFunction(fn: SyntaxNode, syms: FileSymbols, resolver: Resolver): boolean {
  let known = torchScriptFns.get(fn);
  if (known === undefined) torchScriptFns.set(fn, (known = decoratorsOf(fn, syms, resolver).some(isTorchScript)));
  return known;
}

const torchScriptFns = new WeakMap<SyntaxNode, boolean>();

export function isStaticMethod(fn: SyntaxNode): boolean {
  const parent = fn.parent;
  return parent?.type === 'decorated_definition' && parent.namedChildren.some((d) => d.type === 'decorator' && /staticmethod/.test(d.text));
}

/** A method defined as a property (or its setter): `self.name(...)` calls the value the property
 *  returns, never the method itself with the call's arguments. */
export function isPropertyMethod(fn: SyntaxNode): boolean {
  const parent = fn.parent;
  return parent?.type === 'decorated_definition' && parent.namedChildren.some((d) => d.type === 'decorator' && /^@\s*(\w+\.)*(property|cached_property|setter|getter|deleter)\s*$/.test(d.text));
}

export function collectAssigned(node: SyntaxNode | null, out: Set<string>): void {
  if (!node) return;
  const stack = [node];
  while (stack.length) {
    const n = stack.pop()!;
    if (n.type === 'function_definition' || n.type === 'class_definition' || n.type === 'lambda') continue;
    if (n.type === 'assignment' || n.type === 'augmented_assignment') {
      const left = field(n, 'left');
      if (left) for (const id of identifiersOf(left)) out.add(id);
      if (left?.type === 'subscript') { const b = field(left, 'value'); if (b?.type === 'identifier') out.add(b.text); }
    }
    if (n.type === 'for_statement') { const l = field(n, 'left'); if (l) for (const id of identifiersOf(l)) out.add(id); }
    for (const c of n.namedChildren) stack.push(c);
  }
}

/** Whether two operands print the same JSON (keys in the same order, undefined fields left out),
 *  compared without building the strings: branches' environments are merged at every `if`. */
export function sameExpr(a: Expr, b: Expr): boolean {
  return sameJson(a, b);
}

function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a === 'string' || typeof b === 'string') return false;
  // values JSON prints alike: NaN, the infinities and null as null, -0 as 0
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return JSON.stringify(a) === JSON.stringify(b);
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i] ?? null, b[i] ?? null)) return false;
    return true;
  }
  const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  if (ka.length !== kb.length) return false;
  for (let i = 0; i < ka.length; i++) {
    if (ka[i] !== kb[i] || !sameJson((a as Record<string, unknown>)[ka[i]], (b as Record<string, unknown>)[kb[i]])) return false;
  }
  return true;
}

/** Compact source-like text of an operand, for names built from expressions. */
export function exprText(e: Expr): string {
  switch (e.k) {
    case 'ssa': return `%${e.id}`;
    case 'name': return e.path;
    case 'const': return e.raw ?? JSON.stringify(e.v);
    case 'tuple': return e.items.map(exprText).join(', ');
    case 'list': return `[${e.items.map(exprText).join(', ')}]`;
    case 'slice': return `${e.lo ? exprText(e.lo) : ''}:${e.hi ? exprText(e.hi) : ''}${e.step ? `:${exprText(e.step)}` : ''}`;
    case 'opaque': return e.text;
    default: return '?';
  }
}
