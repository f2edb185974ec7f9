// Expressions evaluated without dataflow: __init__ values, default arguments, guards and
// module-level constants. Names are qualified through the file's imports.
import type { Expr } from '../dsl/ir.js';
import { sameNode, type SyntaxNode } from '../parse/python.js';
import { BINARY_OPS, BUILTINS, COMPARE_OPS, UNARY_OPS } from './canon.js';
import type { Resolver } from './resolve.js';
import { field, type FileSymbols } from './symbols.js';

export interface StaticScope {
  syms: FileSymbols;
  resolver: Resolver;
  /** Local names bound to expressions (constant and config propagation). */
  env: Map<string, Expr>;
  /** Names that stay symbolic (parameters, loop variables). */
  locals: Set<string>;
}

const MAX_DEPTH = 120;

export function literal(node: SyntaxNode): Expr | undefined {
  switch (node.type) {
    case 'integer': {
      const t = node.text.replace(/_/g, '');
      const v = /^0[xob]/i.test(t) ? Number(t) : /[jJ]$/.test(t) ? NaN : parseInt(t, 10);
      return Number.isFinite(v) ? { k: 'const', v, raw: node.text } : { k: 'opaque', text: node.text };
    }
    case 'float': {
      const v = Number(node.text.replace(/_/g, ''));
      return Number.isFinite(v) || /inf/i.test(node.text) ? { k: 'const', v, raw: node.text } : { k: 'opaque', text: node.text };
    }
    case 'true': return { k: 'const', v: true };
    case 'false': return { k: 'const', v: false };
    case 'none': return { k: 'const', v: null };
    case 'ellipsis': return { k: 'name', path: '...' };
    case 'string': {
      if (node.namedChildren.some((c) => c.type === 'interpolation')) return { k: 'opaque', text: node.text };
      const s = stringValue(node);
      return s === undefined ? { k: 'opaque', text: node.text } : { k: 'const', v: s };
    }
    case 'concatenated_string': {
      const parts = node.namedChildren.map(stringValue);
      return parts.every((p) => p !== undefined) ? { k: 'const', v: parts.join('') } : { k: 'opaque', text: node.text };
    }
    case 'unary_operator': {
      const arg = field(node, 'argument');
      const op = field(node, 'operator')?.text;
      if (arg && (op === '-' || op === '+') && (arg.type === 'integer' || arg.type === 'float')) {
        const inner = literal(arg);
        if (inner?.k === 'const' && typeof inner.v === 'number') {
          return { k: 'const', v: op === '-' ? -inner.v : inner.v, raw: `${op}${inner.raw}` };
        }
      }
      return undefined;
    }
    default: return undefined;
  }
}

function stringValue(node: SyntaxNode): string | undefined {
  if (node.type !== 'string') return undefined;
  const start = node.namedChildren.find((c) => c.type === 'string_start')?.text ?? '"';
  if (/b/i.test(start)) return undefined;
  // an f-string without placeholders is its text (`f"b h i d, b h j d -> b h i j"`); `{{` is left opaque
  if (/f/i.test(start) && node.namedChildren.some((c) => c.type !== 'string_start' && c.type !== 'string_end' && /[{}]/.test(c.text))) return undefined;
  const raw = /r/i.test(start);
  let out = '';
  for (const c of node.namedChildren) {
    if (c.type === 'string_content') out += c.text;
    else if (c.type === 'escape_sequence') out += raw ? c.text : unescape(c.text);
  }
  return out;
}

function unescape(seq: string): string {
  const map: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"', '0': '\0' };
  const c = seq[1];
  if (c in map) return map[c];
  if (c === 'x' || c === 'u' || c === 'U') return String.fromCodePoint(parseInt(seq.slice(2), 16));
  return seq;
}

/** The dotted spelling of a name or attribute chain, or undefined when it is not one. */
export function dottedOf(node: SyntaxNode): string | undefined {
  if (node.type === 'identifier') return node.text;
  if (node.type === 'attribute') {
    const obj = dottedOf(field(node, 'object')!);
    const attr = field(node, 'attribute')?.text;
    return obj && attr ? `${obj}.${attr}` : undefined;
  }
  return undefined;
}

/** Qualifies a dotted name as seen from a file: `nn.Linear` → `torch.nn.Linear`. */
export function qualify(scope: Pick<StaticScope, 'syms' | 'resolver'>, dotted: string): string {
  const [head, ...rest] = dotted.split('.');
  const r = scope.resolver.resolveName(scope.syms, head);
  if (!r) return dotted;
  const qual = rest.length ? `${r.qual}.${rest.join('.')}` : r.qual;
  if (rest.length && r.k !== 'external') {
    const deep = scope.resolver.resolveQual(qual);
    return deep.k === 'class' || deep.k === 'function' ? deep.def.qual : qual;
  }
  return r.k === 'class' || r.k === 'function' ? r.def.qual : qual;
}

export function staticExpr(node: SyntaxNode, scope: StaticScope, depth = 0): Expr {
  if (depth > MAX_DEPTH) return { k: 'opaque', text: clip(node.text) };
  const lit = literal(node);
  if (lit) return lit;
  const rec = (n: SyntaxNode) => staticExpr(n, scope, depth + 1);
  switch (node.type) {
    case 'identifier': {
      const name = node.text;
      const bound = scope.env.get(name);
      if (bound) return bound;
      if (scope.locals.has(name) || BUILTINS.has(name)) return { k: 'name', path: name };
      const b = scope.syms.bindings.get(name);
      if (b?.k === 'value') {
        const v = literal(b.node);
        if (v) return v;
      }
      return { k: 'name', path: b ? qualify(scope, name) : name };
    }
    case 'attribute': {
      const d = dottedOf(node);
      if (d) {
        const [head, ...rest] = d.split('.');
        const bound = scope.env.get(head);
        if (bound?.k === 'name') return { k: 'name', path: [bound.path, ...rest].join('.') };
        if (bound) return { k: 'opaque', text: clip(node.text) };
        if (scope.locals.has(head) || head === 'self') return { k: 'name', path: d };
        return { k: 'name', path: qualify(scope, d) };
      }
      return { k: 'opaque', text: clip(node.text) };
    }
    case 'parenthesized_expression': {
      const inner = node.namedChildren.find((c) => c.type !== 'comment');
      return inner ? rec(inner) : { k: 'tuple', items: [] };
    }
    case 'tuple': case 'expression_list': return { k: 'tuple', items: node.namedChildren.filter(notComment).map(rec) };
    case 'list': return { k: 'list', items: node.namedChildren.filter(notComment).map(rec) };
    case 'dictionary': {
      const items: [Expr, Expr][] = [];
      for (const p of node.namedChildren) {
        if (p.type === 'pair') items.push([rec(field(p, 'key')!), rec(field(p, 'value')!)]);
        else if (p.type === 'dictionary_splat') items.push([{ k: 'opaque', text: '**' }, rec(p.namedChildren[0])]);
      }
      return { k: 'dict', items };
    }
    case 'list_comprehension': case 'generator_expression': {
      const body = field(node, 'body');
      const forc = node.namedChildren.find((c) => c.type === 'for_in_clause');
      const left = forc && field(forc, 'left');
      const right = forc && field(forc, 'right');
      const extra = node.namedChildren.filter((c) => c.type === 'for_in_clause' || c.type === 'if_clause').length;
      if (body && left && right && extra === 1) {
        const inner: StaticScope = { ...scope, env: new Map(scope.env), locals: new Set(scope.locals) };
        for (const id of identifiersOf(left)) { inner.locals.add(id); inner.env.delete(id); }
        return { k: 'comp', elt: staticExpr(body, inner, depth + 1), v: left.text, iter: rec(right) };
      }
      return { k: 'opaque', text: clip(node.text) };
    }
    case 'call': {
      const fn = field(node, 'function')!;
      const d = dottedOf(fn);
      const argsNode = field(node, 'arguments');
      const args: Expr[] = [];
      const kw: [string, Expr][] = [];
      if (argsNode?.type === 'generator_expression') args.push(rec(argsNode));
      else for (const a of argsNode?.namedChildren ?? []) {
        if (a.type === 'comment') continue;
        if (a.type === 'keyword_argument') kw.push([field(a, 'name')!.text, rec(field(a, 'value')!)]);
        else if (a.type === 'list_splat') args.push({ k: 'star', e: rec(a.namedChildren[0]), double: false });
        else if (a.type === 'dictionary_splat') args.push({ k: 'star', e: rec(a.namedChildren[0]), double: true });
        else args.push(rec(a));
      }
      let callee: string;
      if (d) {
        const [head, ...rest] = d.split('.');
        const bound = scope.env.get(head);
        if (bound?.k === 'name') callee = [bound.path, ...rest].join('.');
        else if (scope.locals.has(head) || head === 'self' || BUILTINS.has(head) && !scope.syms.bindings.has(head)) callee = d;
        else callee = qualify(scope, d);
      } else if (fn.type === 'attribute') {
        // a method of a computed value: torch.arange(n).expand(1, -1)
        args.unshift(rec(field(fn, 'object')!));
        callee = `.${field(fn, 'attribute')!.text}`;
      } else callee = `(${clip(fn.text)})`;
      return { k: 'call', callee, args, kw };
    }
    case 'subscript': {
      const value = field(node, 'value')!;
      const subs = node.namedChildren.filter((c) => !sameNode(c, value) && c.type !== 'comment');
      const index = subs.length === 1 ? rec(subs[0]) : { k: 'tuple' as const, items: subs.map(rec) };
      return { k: 'index', base: rec(value), index };
    }
    case 'slice': return sliceExpr(node, rec);
    case 'binary_operator': {
      const op = BINARY_OPS[field(node, 'operator')!.text];
      return op ? { k: 'call', callee: op, args: [rec(field(node, 'left')!), rec(field(node, 'right')!)], kw: [] } : { k: 'opaque', text: clip(node.text) };
    }
    case 'unary_operator': case 'not_operator': {
      const op = node.type === 'not_operator' ? 'not' : UNARY_OPS[field(node, 'operator')!.text];
      return { k: 'call', callee: op, args: [rec(field(node, 'argument')!)], kw: [] };
    }
    case 'boolean_operator': {
      const op = field(node, 'operator')!.text === 'and' ? 'and' : 'or';
      return { k: 'call', callee: op, args: [rec(field(node, 'left')!), rec(field(node, 'right')!)], kw: [] };
    }
    case 'comparison_operator': {
      const parts = comparisonParts(node);
      if (parts.length === 3) return { k: 'call', callee: COMPARE_OPS[parts[1] as string] ?? 'compare', args: [rec(parts[0] as SyntaxNode), rec(parts[2] as SyntaxNode)], kw: [] };
      return { k: 'opaque', text: clip(node.text) };
    }
    case 'conditional_expression': {
      const [a, c, b] = node.namedChildren.filter(notComment);
      return { k: 'call', callee: 'ifexp', args: [rec(c), rec(a), rec(b)], kw: [] };
    }
    case 'keyword_argument':
      return rec(field(node, 'value')!);
    default:
      return { k: 'opaque', text: clip(node.text) };
  }
}

export function sliceExpr(node: SyntaxNode, rec: (n: SyntaxNode) => Expr): Expr {
  // tree-sitter's slice has no fields: walk its children, splitting at ':'.
  const parts: (Expr | null)[] = [null];
  for (let i = 0; i < node.childCount; i++) {
    const c = node.child(i)!;
    if (c.type === ':') parts.push(null);
    else if (c.isNamed && c.type !== 'comment') parts[parts.length - 1] = rec(c);
  }
  return { k: 'slice', lo: parts[0] ?? null, hi: parts[1] ?? null, step: parts[2] ?? null };
}

/** [left, op, right, op, right, ...] of a comparison chain. */
export function comparisonParts(node: SyntaxNode): (SyntaxNode | string)[] {
  const out: (SyntaxNode | string)[] = [];
  let pendingOp = '';
  for (let i = 0; i < node.childCount; i++) {
    const c = node.child(i)!;
    if (c.isNamed && c.type !== 'comment') {
      if (pendingOp) { out.push(pendingOp); pendingOp = ''; }
      out.push(c);
    } else if (!c.isNamed) pendingOp = pendingOp ? `${pendingOp} ${c.type}` : c.type;
  }
  return out;
}

export function identifiersOf(target: SyntaxNode): string[] {
  if (target.type === 'identifier') return [target.text];
  if (['pattern_list', 'tuple_pattern', 'list_pattern', 'tuple', 'list', 'parenthesized_expression'].includes(target.type)) {
    return target.namedChildren.flatMap(identifiersOf);
  }
  if (target.type === 'list_splat_pattern') return target.namedChildren.flatMap(identifiersOf);
  return [];
}

export function notComment(n: SyntaxNode): boolean {
  return n.type !== 'comment';
}

export function clip(text: string, max = 160): string {
  const one = text.replace(/\s*\n\s*/g, ' ');
  return one.length > max ? `${one.slice(0, max - 3)}...` : one;
}
