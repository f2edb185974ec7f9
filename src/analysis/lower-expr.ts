// Lowering of expressions: names, attributes of `self` (typed submodules and containers),
// subscripts, operators and literals. Calls are the next stage's (lower-call).
import type { Expr } from '../dsl/ir.js';
import { sameNode, type SyntaxNode } from '../parse/python.js';
import { BINARY_OPS, COMPARE_OPS, TENSOR_ATTRS, UNARY_OPS } from './canon.js';
import { elementTypes, typeName, type ClassInfo, type ClassTable } from './classes.js';
import { defaultClassOf, heldClassOf, isClassName, layerClassOf } from './layer-class.js';
import { LowererBase } from './lower-base.js';
import { LIMITS, exprText, num, type Val } from './lower-support.js';
import { ABSENT_IF_NONE, optionalAdd } from './optional-add.js';
import { clip, comparisonParts, literal, notComment, sliceExpr } from './static.js';
import { field } from './symbols.js';

/** A `self.<name>` of a class: an attribute's classes, a layer class it holds, a method, or
 *  nothing. The lists are shared by every op that reads them and never changed. */
type SelfAttr =
  | { k: 'held'; cls: string }
  | { k: 'attr'; types: string[]; elems?: string[] }
  | { k: 'method'; m: NonNullable<ReturnType<ClassTable['findMethod']>> }
  | null;

/** Per class, its `self` attributes as looked up so far (a class's attributes are final once
 *  its ClassInfo is built, before any of its methods is lowered). */
const selfAttrs = new WeakMap<ClassInfo, Map<string, SelfAttr>>();

export abstract class ExprLowerer extends LowererBase {
  protected abstract call(node: SyntaxNode): Val;

  protected expr(node: SyntaxNode): Val {
    if (this.exprDepth >= LIMITS.exprDepth) {
      this.limit(node, `expression nested deeper than ${LIMITS.exprDepth}: kept as source text`);
      return { e: { k: 'opaque', text: clip(node.text) } };
    }
    this.exprDepth++;
    try {
      return this.exprInner(node);
    } finally {
      this.exprDepth--;
    }
  }

  protected exprInner(node: SyntaxNode): Val {
    const lit = literal(node);
    if (lit) return { e: lit };
    switch (node.type) {
      case 'identifier': return this.name(node.text);
      case 'attribute': return this.attribute(node);
      case 'call': return this.call(node);
      case 'subscript': return this.subscript(node);
      case 'parenthesized_expression': {
        const inner = node.namedChildren.find(notComment);
        return inner ? this.expr(inner) : { e: { k: 'tuple', items: [] } };
      }
      case 'tuple': case 'expression_list': case 'list': case 'set': {
        const items = node.namedChildren.filter(notComment).map((c) => this.expr(c).e);
        return { e: { k: node.type === 'list' ? 'list' : 'tuple', items } };
      }
      case 'dictionary': {
        const items: [Expr, Expr][] = [];
        for (const p of node.namedChildren) {
          if (p.type === 'pair') items.push([this.expr(field(p, 'key')!).e, this.expr(field(p, 'value')!).e]);
          else if (p.type === 'dictionary_splat') items.push([{ k: 'opaque', text: '**' }, this.expr(p.namedChildren[0]).e]);
        }
        return { e: { k: 'dict', items } };
      }
      case 'list_splat': return { e: { k: 'star', e: this.expr(node.namedChildren[0]).e, double: false } };
      case 'dictionary_splat': return { e: { k: 'star', e: this.expr(node.namedChildren[0]).e, double: true } };
      case 'slice': return { e: sliceExpr(node, (n) => this.expr(n).e) };
      case 'binary_operator': {
        const l = this.expr(field(node, 'left')!);
        const r = this.expr(field(node, 'right')!);
        const op = BINARY_OPS[field(node, 'operator')!.text] ?? 'binop';
        return this.emit('op', op, [l.e, r.e], [], node);
      }
      case 'unary_operator': {
        const a = this.expr(field(node, 'argument')!);
        return this.emit('op', UNARY_OPS[field(node, 'operator')!.text] ?? 'unary', [a.e], [], node);
      }
      case 'not_operator': return this.emit('op', 'not', [this.expr(field(node, 'argument')!).e], [], node);
      case 'boolean_operator': {
        const l = this.expr(field(node, 'left')!);
        const r = this.expr(field(node, 'right')!);
        const isOr = field(node, 'operator')!.text === 'or';
        const v = this.emit('op', isOr ? 'or' : 'and', [l.e, r.e], [], node);
        // `norm_layer or nn.BatchNorm2d`: a layer class with a default
        const cls = isOr ? l.cls ?? r.cls ?? this.layerClass(r.e) : undefined;
        return cls ? { ...v, cls } : v;
      }
      case 'comparison_operator': {
        const parts = comparisonParts(node);
        let acc: Val | undefined;
        let left = this.expr(parts[0] as SyntaxNode);
        for (let i = 1; i + 1 < parts.length; i += 2) {
          const right = this.expr(parts[i + 1] as SyntaxNode);
          const cmp = this.emit('op', COMPARE_OPS[parts[i] as string] ?? 'compare', [left.e, right.e], [], node);
          acc = acc ? this.emit('op', 'and', [acc.e, cmp.e], [], node) : cmp;
          left = right;
        }
        return acc ?? left;
      }
      case 'conditional_expression': {
        const [a, c, b] = node.namedChildren.filter(notComment);
        const cv = this.expr(c);
        const av = this.expr(a);
        const bv = this.expr(b);
        const add = optionalAdd(this.out, cv.e, av.e, bv.e);
        if (add) {
          add.kw = [[ABSENT_IF_NONE, { k: 'const', v: true }]];
          return { e: { k: 'ssa', id: add.id } };
        }
        const r = this.emit('op', 'ifexp', [cv.e, av.e, bv.e], [], node);
        const types = [...new Set([...(av.types ?? []), ...(bv.types ?? [])])];
        return types.length ? { ...r, types } : r;
      }
      case 'named_expression': {
        const v = this.expr(field(node, 'value')!);
        this.frame.env.set(field(node, 'name')!.text, v);
        return v;
      }
      case 'keyword_argument': return this.expr(field(node, 'value')!);
      case 'await': return this.expr(node.namedChildren[0]);
      default:
        return { e: { k: 'opaque', text: clip(node.text) } };
    }
  }

  /** The class a layer expression builds by default (`nn.BatchNorm2d`, `partial(nn.BatchNorm2d, ...)`). */
  protected layerClass(e: Expr): string | undefined {
    return defaultClassOf(e, () => undefined, (q) => isClassName(this.resolver, q));
  }

  protected name(name: string): Val {
    const local = this.frame.env.get(name);
    if (local) return local;
    if (name === 'self') return { e: { k: 'name', path: 'self' } };
    const syms = this.frame.syms;
    const b = syms.bindings.get(name);
    if (!b) return { e: { k: 'name', path: name } };
    if (b.k === 'value') {
      const v = literal(b.node);
      if (v) return { e: v };
    }
    const r = this.resolver.resolveName(syms, name)!;
    if (r.k === 'function') return { e: { k: 'name', path: r.qual }, fn: { def: r.def } };
    return { e: { k: 'name', path: r.k === 'class' ? r.def.qual : r.qual } };
  }

  /** A `self.<name>` attribute: a submodule (typed), a ModuleList (element types), or a value. */
  protected attrVal(name: string): Val | undefined {
    const cls = this.frame.selfCls;
    if (!cls) return undefined;
    let known = selfAttrs.get(cls);
    if (!known) selfAttrs.set(cls, (known = new Map()));
    let a = known.get(name);
    if (a === undefined) known.set(name, (a = this.selfAttr(cls, name)));
    if (!a) return undefined;
    const e: Expr = { k: 'name', path: `self.${name}` };
    if (a.k === 'held') return { e, cls: a.cls };
    if (a.k === 'method') return { e, fn: { def: a.m.fn, selfVal: { e: { k: 'name', path: 'self' } }, defCls: a.m.cls } };
    return { e, ...(a.types.length ? { types: a.types } : {}), ...(a.elems ? { elems: a.elems } : {}) };
  }

  /** What `self.<name>` is in a class: read once per class and name, since every method (and
   *  every helper inlined into one) looks its submodules up again. */
  private selfAttr(cls: ClassInfo, name: string): SelfAttr {
    const defs = cls.attrs.filter((a) => a.name === name);
    if (defs.length) {
      // an attribute holding a layer class chosen by a parameter (`self._norm_layer = norm_layer`)
      const held = defs.length === 1 ? heldClassOf(defs[0].value, defs[0].defaults) : undefined;
      if (held) return { k: 'held', cls: held };
      const types = [...new Set(defs.map((a) => layerClassOf(a.value, a.defaults) ?? typeName(a.value)).filter((t) => t !== '?'))];
      const container = defs.some((a) => a.value.k === 'call' && /(^|\.)(ModuleList|ModuleDict)$/.test(a.value.callee));
      const elems = container ? [...new Set(defs.flatMap((a) => elementTypes(a.value)))] : undefined;
      return { k: 'attr', types, elems };
    }
    const m = this.classes.findMethod(cls, name);
    return m ? { k: 'method', m } : null;
  }

  /** The `self.x = nn.Sequential(...)` definitions of an attribute: one, or one per branch of
   *  the `if` in __init__ that chooses it (each with the condition that selects it). */
  protected attribute(node: SyntaxNode): Val {
    const objNode = field(node, 'object')!;
    const attr = field(node, 'attribute')!.text;
    if (objNode.type === 'identifier' && objNode.text === 'self') {
      const selfVal = this.frame.env.get('self');
      if (!selfVal || (selfVal.e.k === 'name' && selfVal.e.path === 'self')) {
        return this.attrVal(attr) ?? { e: { k: 'name', path: `self.${attr}` } };
      }
    }
    const obj = this.expr(objNode);
    if (attr === 'mT') return this.emit('op', 'transpose', [obj.e, num(-2), num(-1)], [], node);
    if (obj.e.k === 'name' && !TENSOR_ATTRS.has(attr)) {
      const path = `${obj.e.path}.${attr}`;
      const r = obj.e.path.includes('.') || this.frame.syms.bindings.has(obj.e.path.split('.')[0]) ? this.resolver.resolveQual(path) : undefined;
      if (r?.k === 'function') return { e: { k: 'name', path: r.qual }, fn: { def: r.def } };
      return { e: { k: 'name', path: r?.k === 'class' ? r.def.qual : path } };
    }
    return this.emit('op', 'getattr', [obj.e, { k: 'const', v: attr }], [], node);
  }

  protected subscriptIndex(node: SyntaxNode, value: SyntaxNode): Expr {
    const subs = node.namedChildren.filter((c) => !sameNode(c, value) && notComment(c));
    const items = subs.map((c) => this.expr(c).e);
    return items.length === 1 ? items[0] : { k: 'tuple', items };
  }

  protected subscript(node: SyntaxNode): Val {
    const valueNode = field(node, 'value')!;
    const base = this.expr(valueNode);
    const index = this.subscriptIndex(node, valueNode);
    if (base.elems) return { e: { k: 'name', path: `${exprText(base.e)}[${exprText(index)}]` }, types: base.elems };
    const r = this.emit('op', 'getitem', [base.e, index], [], node);
    // ACT2FN[config.hidden_act]: indexing a global table of activations gives a module.
    if (base.e.k === 'name' && !this.frame.env.has(base.e.path.split('.')[0]) && base.e.path !== 'self') {
      return { ...r, types: [`${base.e.path}[${exprText(index)}]`] };
    }
    return r;
  }
}
