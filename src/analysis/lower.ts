// Lowering of a method body to SSA dataflow (DESIGN §3): one op per call or operator with its
// canonical name, helpers inlined with provenance, branches kept as guarded paths with phis,
// loops over ModuleLists typed by their elements.
import type { Diagnostic } from '../diag.js';
import type { Expr, IfStmt, Method, Op, OpKind, Param, Phi, Span, Stmt } from '../dsl/ir.js';
import { sameNode, type SyntaxNode } from '../parse/python.js';
import { posAt } from '../parse/source.js';
import {
  BINARY_OPS, BUILTINS, CAST_METHODS, COMPARE_OPS, KW_RENAMES, OP_NAMESPACES, POSITIONAL_TO_KW,
  TENSOR_ATTRS, TENSOR_METHODS, UNARY_OPS, canonicalName, isDtypeName,
} from './canon.js';
import { elementTypes, paramNames, spanOf, typeName, type ClassInfo, type ClassTable } from './classes.js';
import type { Resolver } from './resolve.js';
import { clip, comparisonParts, dottedOf, identifiersOf, literal, notComment, qualify, sliceExpr, staticExpr } from './static.js';
import { field, type FileSymbols, type FuncDef } from './symbols.js';

/** A value in the lowering environment: its operand, plus what is known of it. */
interface Val {
  e: Expr;
  /** Classes of a module value (a submodule, a ModuleList element, a constructed module). */
  types?: string[];
  /** Element classes when the value is a ModuleList/Sequential/ModuleDict attribute. */
  elems?: string[];
  /** A callable the analysis can inline. */
  fn?: { def: FuncDef; selfVal?: Val; defCls?: ClassInfo };
}

interface Frame {
  syms: FileSymbols;
  /** The class of `self` (attribute lookups) and the class defining the method (super()). */
  selfCls?: ClassInfo;
  defCls?: ClassInfo;
  env: Map<string, Val>;
}

type Flow = { terminal: null | 'return' | 'raise'; ret?: Expr; retNode?: SyntaxNode };

export const LIMITS = { inlineDepth: 10, opsPerMethod: 20000, exprDepth: 150, blockDepth: 60, inlineMaxLines: 120 };

const NONE: Expr = { k: 'const', v: null };

export class MethodLowerer {
  private nextId = 1;
  private out: Stmt[] = [];
  private frame!: Frame;
  private via: string[] = [];
  /** The call in the method being lowered that the current inlining started at. */
  private callSite?: Span;
  private stack: string[] = [];
  private opCount = 0;
  private exprDepth = 0;
  private blockDepth = 0;
  private limitHit = false;

  constructor(
    private readonly resolver: Resolver,
    private readonly classes: ClassTable,
    private readonly ownerPath: string,
    private readonly diagnostics: Diagnostic[],
  ) {}

  lower(fn: FuncDef, cls?: ClassInfo): Method {
    const syms = this.resolver.symbolsOf(fn.module)!;
    const env = new Map<string, Val>();
    const params: Param[] = [];
    for (const p of field(fn.node, 'parameters')?.namedChildren ?? []) {
      const names = paramNames(p);
      if (!names.length) continue;
      const param: Param = { name: names[0] };
      if (p.type === 'list_splat_pattern') param.star = '*';
      if (p.type === 'dictionary_splat_pattern') param.star = '**';
      const def = field(p, 'value');
      if (def) param.default = staticExpr(def, { syms, resolver: this.resolver, env: new Map(), locals: new Set() });
      params.push(param);
      env.set(names[0], { e: { k: 'name', path: names[0] } });
    }
    this.frame = { syms, selfCls: cls, defCls: cls, env };
    this.stack = [fn.qual];
    const body: Stmt[] = [];
    this.out = body;
    const flow = this.block(field(fn.node, 'body'));
    const src = syms.parsed.source;
    if (flow.terminal === 'return' || flow.terminal === null) {
      const node = flow.retNode ?? fn.node;
      body.push({ k: 'return', value: flow.terminal === 'return' ? flow.ret ?? NONE : null, span: spanOf(src, node, this.ownerPath) });
    }
    const method: Method = { name: fn.name, params, body, span: spanOf(src, fn.node, this.ownerPath) };
    const decorators = decoratorsOf(fn.node, syms, this.resolver);
    if (decorators.length) method.decorators = decorators;
    return method;
  }

  // ---- statements -------------------------------------------------------------------------

  private block(node: SyntaxNode | null): Flow {
    if (!node) return { terminal: null };
    return this.stmts(node.namedChildren.filter(notComment), 0);
  }

  private stmts(list: SyntaxNode[], from: number): Flow {
    if (++this.blockDepth > LIMITS.blockDepth) {
      this.blockDepth--;
      if (list[from]) this.limit(list[from], `blocks nested deeper than ${LIMITS.blockDepth}: the inner code is not analysed`);
      return { terminal: null };
    }
    try {
      for (let i = from; i < list.length; i++) {
        const s = list[i];
        if (this.limitHit) return { terminal: null };
        switch (s.type) {
          case 'expression_statement': this.exprStmt(s); break;
          case 'return_statement': {
            const v = s.namedChildren.find(notComment);
            return { terminal: 'return', ret: v ? this.expr(v).e : NONE, retNode: s };
          }
          case 'raise_statement':
            this.note(s, clip(s.text, 80));
            return { terminal: 'raise' };
          case 'if_statement': {
            const r = this.ifStmt(s, list.slice(i + 1));
            if (r.consumedRest || r.flow.terminal) return r.flow;
            break;
          }
          case 'for_statement': case 'while_statement': this.loop(s); break;
          case 'with_statement': {
            for (const item of s.namedChildren.find((c) => c.type === 'with_clause')?.namedChildren ?? []) {
              const value = item.namedChildren[0];
              if (value?.type === 'as_pattern') {
                const v = this.expr(value.namedChildren[0]);
                const target = field(value, 'alias') ?? value.namedChildren[1];
                if (target) this.assign(target.type === 'as_pattern_target' ? target.namedChildren[0] ?? target : target, v, s);
              } else if (value) this.expr(value);
            }
            const flow = this.block(field(s, 'body'));
            if (flow.terminal) return flow;
            break;
          }
          case 'try_statement': {
            const flow = this.tryStmt(s);
            if (flow.terminal) return flow;
            break;
          }
          case 'function_definition': case 'decorated_definition': {
            const fnNode = s.type === 'decorated_definition' ? field(s, 'definition')! : s;
            if (fnNode.type === 'function_definition') {
              const name = field(fnNode, 'name')!.text;
              const def: FuncDef = { name, qual: `${this.stack[this.stack.length - 1]}.<locals>.${name}`, node: fnNode, module: this.frame.syms.module };
              this.frame.env.set(name, { e: { k: 'name', path: name }, fn: { def } });
            }
            break;
          }
          case 'break_statement': case 'continue_statement': this.note(s, s.type === 'break_statement' ? 'break' : 'continue'); break;
          default: break;
        }
      }
      return { terminal: null };
    } finally {
      this.blockDepth--;
    }
  }

  private exprStmt(s: SyntaxNode): void {
    const e = s.namedChildren.find(notComment);
    if (!e) return;
    if (e.type === 'assignment') {
      const left = field(e, 'left')!;
      const right = field(e, 'right');
      if (!right) return; // annotation only
      const targets = [left];
      let r = right;
      while (r.type === 'assignment') { targets.push(field(r, 'left')!); r = field(r, 'right')!; }
      if (targets.length === 1 && this.unpackGenerator(left, r, s)) return;
      const v = this.expr(r);
      for (const t of targets) this.assign(t, v, s);
    } else if (e.type === 'augmented_assignment') {
      const left = field(e, 'left')!;
      const opText = field(e, 'operator')!.text.replace('=', '');
      const l = this.expr(left);
      const r = this.expr(field(e, 'right')!);
      const v = this.emit('op', BINARY_OPS[opText] ?? opText, [l.e, r.e], [], e);
      this.assign(left, v, s);
    } else if (e.type === 'string') {
      // docstring
    } else {
      const v = this.expr(e);
      // `scores.masked_fill_(mask, v)`: an in-place tensor method returns the tensor it changed,
      // so later reads of the name see the op's result
      const fn = e.type === 'call' ? field(e, 'function') : null;
      const obj = fn?.type === 'attribute' ? field(fn, 'object') : null;
      const m = fn?.type === 'attribute' ? field(fn, 'attribute')?.text ?? '' : '';
      if (obj?.type === 'identifier' && m.endsWith('_') && !m.startsWith('_') && TENSOR_METHODS.has(m.slice(0, -1)) && v.e.k === 'ssa') this.assign(obj, v, s);
    }
  }

  /** `a, b = (f(t) for t in X.chunk(2, dim=-1))`: as many values as targets, each the body with
   *  the loop variable bound to one item. True when handled. */
  private unpackGenerator(left: SyntaxNode, right: SyntaxNode, stmt: SyntaxNode): boolean {
    if (right.type !== 'generator_expression' || !['pattern_list', 'tuple_pattern'].includes(left.type)) return false;
    const targets = left.namedChildren.filter(notComment);
    const clauses = right.namedChildren.filter((c) => c.type === 'for_in_clause' || c.type === 'if_clause');
    const body = field(right, 'body');
    if (!body || clauses.length !== 1 || clauses[0].type !== 'for_in_clause' || targets.some((t) => t.type !== 'identifier')) return false;
    const loopVar = field(clauses[0], 'left');
    const iterNode = field(clauses[0], 'right');
    if (loopVar?.type !== 'identifier' || !iterNode) return false;
    const iter = this.expr(iterNode);
    const literal = iter.e.k === 'tuple' || iter.e.k === 'list' ? iter.e.items : undefined;
    if (literal && literal.length !== targets.length) return false;
    const saved = this.frame.env.get(loopVar.text);
    const values = targets.map((t, i) => {
      const item: Val = literal ? { e: literal[i] } : this.emit('op', 'getitem', [iter.e, num(i)], [], t);
      this.frame.env.set(loopVar.text, item);
      return this.expr(body);
    });
    if (saved) this.frame.env.set(loopVar.text, saved); else this.frame.env.delete(loopVar.text);
    // the generated tuple unpacked: element i spans its target name, as `a, b = f(x)` does
    const all: Expr = { k: 'tuple', items: values.map((v) => v.e) };
    targets.forEach((t, i) => this.assign(t, this.emit('op', 'getitem', [all, num(i)], [], t), stmt));
    return true;
  }

  private assign(target: SyntaxNode, v: Val, stmt: SyntaxNode): void {
    switch (target.type) {
      case 'identifier': this.frame.env.set(target.text, v); return;
      case 'pattern_list': case 'tuple_pattern': case 'list_pattern': case 'tuple': case 'list': case 'parenthesized_expression': {
        const items = target.namedChildren.filter(notComment);
        if (target.type === 'parenthesized_expression' && items.length === 1) { this.assign(items[0], v, stmt); return; }
        const starAt = items.findIndex((t) => t.type === 'list_splat_pattern');
        items.forEach((t, idx) => {
          let part: Val;
          if ((v.e.k === 'tuple' || v.e.k === 'list') && v.e.items.length === items.length && starAt < 0) part = { e: v.e.items[idx] };
          else if (t.type === 'list_splat_pattern') {
            part = this.emit('op', 'getitem', [v.e, { k: 'slice', lo: num(idx), hi: idx === items.length - 1 ? null : num(idx - items.length + 1), step: null }], [], t);
          } else {
            const index = starAt >= 0 && idx > starAt ? idx - items.length : idx;
            part = this.emit('op', 'getitem', [v.e, num(index)], [], t);
          }
          this.assign(t.type === 'list_splat_pattern' ? t.namedChildren[0] : t, part, stmt);
        });
        return;
      }
      case 'attribute': {
        const obj = this.expr(field(target, 'object')!);
        this.emit('op', 'setattr', [obj.e, { k: 'const', v: field(target, 'attribute')!.text }, v.e], [], target);
        return;
      }
      case 'subscript': {
        const baseNode = field(target, 'value')!;
        const base = this.expr(baseNode);
        const index = this.subscriptIndex(target, baseNode);
        const r = this.emit('op', 'setitem', [base.e, index, v.e], [], stmt);
        if (baseNode.type === 'identifier') this.frame.env.set(baseNode.text, r);
        return;
      }
      default: return;
    }
  }

  private ifStmt(s: SyntaxNode, rest: SyntaxNode[]): { flow: Flow; consumedRest: boolean } {
    const alts = s.namedChildren.filter((c) => c.type === 'elif_clause' || c.type === 'else_clause');
    return this.ifChain(s, field(s, 'condition')!, field(s, 'consequence'), alts, rest);
  }

  private ifChain(node: SyntaxNode, condNode: SyntaxNode, thenNode: SyntaxNode | null, alts: SyntaxNode[], rest: SyntaxNode[]): { flow: Flow; consumedRest: boolean } {
    const cond = this.expr(condNode).e;
    const before = new Map(this.frame.env);
    const outer = this.out;
    const thenOut: Stmt[] = [];
    const elseOut: Stmt[] = [];
    this.out = thenOut;
    let thenFlow = this.block(thenNode);
    let thenEnv = this.frame.env;
    this.frame.env = new Map(before);
    this.out = elseOut;
    let elseFlow: Flow = { terminal: null };
    let consumedRest = false;
    if (alts.length) {
      const [alt, ...more] = alts;
      if (alt.type === 'elif_clause') {
        const r = this.ifChain(alt, field(alt, 'condition')!, field(alt, 'consequence'), more, rest);
        elseFlow = r.flow;
        consumedRest = r.consumedRest;
      } else elseFlow = this.block(field(alt, 'body'));
    }
    let elseEnv = this.frame.env;
    // An early return makes the code after the `if` the other branch's continuation.
    if (!consumedRest && rest.length) {
      if (thenFlow.terminal === 'return' && !elseFlow.terminal) {
        elseFlow = this.stmts(rest, 0);
        elseEnv = this.frame.env;
        consumedRest = true;
      } else if (elseFlow.terminal === 'return' && !thenFlow.terminal) {
        this.out = thenOut;
        this.frame.env = thenEnv;
        thenFlow = this.stmts(rest, 0);
        thenEnv = this.frame.env;
        consumedRest = true;
      }
    }
    this.out = outer;
    const phis: Phi[] = [];
    const stmt: IfStmt = { k: 'if', cond, then: thenOut, else: elseOut, phis, span: this.span(node) };
    let flow: Flow = { terminal: null };
    if (thenFlow.terminal && elseFlow.terminal) {
      const rets = [thenFlow, elseFlow].filter((f) => f.terminal === 'return');
      if (rets.length === 2) {
        const id = this.id();
        phis.push({ id, v: 'return', ins: [thenFlow.ret ?? NONE, elseFlow.ret ?? NONE] });
        flow = { terminal: 'return', ret: { k: 'ssa', id } };
      } else if (rets.length === 1) flow = { terminal: 'return', ret: rets[0].ret, retNode: rets[0].retNode };
      else flow = { terminal: 'raise' };
      this.frame.env = thenEnv;
    } else if (thenFlow.terminal) this.frame.env = elseEnv;
    else if (elseFlow.terminal) this.frame.env = thenEnv;
    else {
      const merged = new Map(before);
      for (const name of new Set([...thenEnv.keys(), ...elseEnv.keys()])) {
        const a = thenEnv.get(name);
        const b = elseEnv.get(name);
        if (a && b && (a === b || sameExpr(a.e, b.e))) { merged.set(name, a); continue; }
        const id = this.id();
        phis.push({ id, v: name, ins: [a?.e ?? NONE, b?.e ?? NONE] });
        const types = [...new Set([...(a?.types ?? []), ...(b?.types ?? [])])];
        merged.set(name, { e: { k: 'ssa', id }, ...(types.length ? { types } : {}) });
      }
      this.frame.env = merged;
    }
    this.out.push(stmt);
    return { flow, consumedRest };
  }

  private loop(s: SyntaxNode): void {
    const isWhile = s.type === 'while_statement';
    let iter: Val;
    let varName = '';
    let elemTypes: string[] | undefined;
    const left = isWhile ? null : field(s, 'left');
    if (isWhile) iter = this.expr(field(s, 'condition')!);
    else {
      const right = field(s, 'right')!;
      iter = this.expr(right);
      elemTypes = iter.elems;
      varName = left!.text;
      // enumerate(self.layers) / zip(...): the element types of a ModuleList still reach the loop variable.
      if (!elemTypes && right.type === 'call' && field(right, 'function')?.text === 'enumerate') {
        const inner = field(right, 'arguments')?.namedChildren.filter(notComment)[0];
        if (inner) elemTypes = this.peekElems(inner);
      }
    }
    const body = field(s, 'body');
    const assigned = new Set<string>();
    collectAssigned(body, assigned);
    if (left) for (const id of identifiersOf(left)) assigned.delete(id);
    const phis: Phi[] = [];
    for (const name of assigned) {
      const cur = this.frame.env.get(name);
      if (!cur) continue;
      const id = this.id();
      phis.push({ id, v: name, ins: [cur.e, NONE] });
      this.frame.env.set(name, { ...cur, e: { k: 'ssa', id } });
    }
    if (left) {
      const ids = identifiersOf(left);
      const elemVar = left.type === 'identifier' ? left.text : ids[ids.length - 1];
      for (const id of ids) {
        this.frame.env.set(id, { e: { k: 'name', path: id }, ...(id === elemVar && elemTypes?.length ? { types: elemTypes } : {}) });
      }
    }
    const outer = this.out;
    const bodyOut: Stmt[] = [];
    this.out = bodyOut;
    const flow = this.block(body);
    if (flow.terminal === 'return') this.note(s, 'return inside a loop: the loop is analysed as if it ran to its end');
    for (const p of phis) p.ins[1] = this.frame.env.get(p.v)?.e ?? NONE;
    for (const p of phis) {
      const cur = this.frame.env.get(p.v);
      this.frame.env.set(p.v, { ...(cur ?? {}), e: { k: 'ssa', id: p.id } });
    }
    this.out = outer;
    this.out.push({ k: 'for', v: varName, iter: iter.e, ...(elemTypes?.length ? { type: elemTypes } : {}), phis, body: bodyOut, span: this.span(s) });
    const orelse = s.namedChildren.find((c) => c.type === 'else_clause');
    if (orelse) this.block(field(orelse, 'body'));
  }

  private peekElems(node: SyntaxNode): string[] | undefined {
    const d = dottedOf(node);
    if (!d?.startsWith('self.') || d.split('.').length !== 2) return undefined;
    return this.attrVal(d.slice(5))?.elems;
  }

  private tryStmt(s: SyntaxNode): Flow {
    const flow = this.block(field(s, 'body'));
    for (const c of s.namedChildren) {
      if (c.type === 'except_clause' || c.type === 'except_group_clause') {
        const outer = this.out;
        const before = new Map(this.frame.env);
        const thenOut: Stmt[] = [];
        this.out = thenOut;
        const head = c.namedChildren.find((x) => x.type !== 'block' && x.type !== 'comment');
        this.block(c.namedChildren.find((x) => x.type === 'block') ?? null);
        this.out = outer;
        this.frame.env = before;
        this.out.push({ k: 'if', cond: { k: 'opaque', text: `except ${head ? clip(head.text, 60) : ''}`.trim() }, then: thenOut, else: [], phis: [], span: this.span(c) });
      } else if (c.type === 'else_clause' || c.type === 'finally_clause') {
        const f = this.block(c.namedChildren.find((x) => x.type === 'block') ?? null);
        if (f.terminal) return f;
      }
    }
    return flow;
  }

  // ---- expressions ------------------------------------------------------------------------

  private expr(node: SyntaxNode): Val {
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

  private exprInner(node: SyntaxNode): Val {
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
        return this.emit('op', field(node, 'operator')!.text === 'and' ? 'and' : 'or', [l.e, r.e], [], node);
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

  private name(name: string): Val {
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
  private attrVal(name: string): Val | undefined {
    const cls = this.frame.selfCls;
    if (!cls) return undefined;
    const defs = cls.attrs.filter((a) => a.name === name);
    if (defs.length) {
      const types = [...new Set(defs.map((a) => typeName(a.value)).filter((t) => t !== '?'))];
      const container = defs.some((a) => a.value.k === 'call' && /(^|\.)(ModuleList|ModuleDict)$/.test(a.value.callee));
      const elems = container ? [...new Set(defs.flatMap((a) => elementTypes(a.value)))] : undefined;
      return { e: { k: 'name', path: `self.${name}` }, ...(types.length ? { types } : {}), ...(elems ? { elems } : {}) };
    }
    const m = this.classes.findMethod(cls, name);
    if (m) return { e: { k: 'name', path: `self.${name}` }, fn: { def: m.fn, selfVal: { e: { k: 'name', path: 'self' } }, defCls: m.cls } };
    return undefined;
  }

  /** The `self.x = nn.Sequential(...)` definitions of an attribute: one, or one per branch of
   *  the `if` in __init__ that chooses it (each with the condition that selects it). */
  private sequentialDefs(text: string): { guard?: Expr; items: { callee: string; span: Span }[] }[] | undefined {
    const cls = this.frame.selfCls;
    if (!cls || !/^self\.[A-Za-z_][A-Za-z0-9_]*$/.test(text)) return undefined;
    const defs = cls.attrs.filter((a) => a.name === text.slice(5));
    if (defs.length === 1) {
      const items = this.sequentialItems(defs[0]);
      return items && [{ items }];
    }
    // every definition guarded: the branches of __init__ each build their own Sequential
    if (defs.length < 2 || defs.length > 4 || defs.some((d) => !d.guard?.length)) return undefined;
    const out = defs.map((d) => ({ guard: d.guard![d.guard!.length - 1], items: this.sequentialItems(d) }));
    return out.every((d) => d.items) ? (out as { guard?: Expr; items: { callee: string; span: Span }[] }[]) : undefined;
  }

  /** The elements of a `self.x = nn.Sequential(...)` built in this class's own file, or undefined. */
  private sequentialItems(a: ClassInfo['attrs'][number]): { callee: string; span: Span }[] | undefined {
    const cls = this.frame.selfCls!;
    if (a.value.k !== 'call' || !/(^|\.)Sequential$/.test(a.value.callee) || a.value.kw.length || !a.value.args.length) return undefined;
    if (!a.value.args.every((x) => x.k === 'call' || (x.k === 'index' && x.base.k === 'name'))) return undefined;
    const home = a.from ? this.classes.resolver.resolveQual(a.from) : undefined;
    const classFile = home?.k === 'class' ? this.resolver.symbolsOf(home.def.module)?.parsed.source.path : cls.syms.parsed.source.path;
    // a Sequential a factory function builds is edited where the factory builds it
    const file = a.built?.file ?? classFile;
    if (!file) return undefined;
    const span: Span = { ...(a.built ?? a.span) };
    delete span.file;
    if (file !== this.ownerPath) span.file = file;
    return a.value.args.map((x) => ({ callee: typeName(x), span }));
  }

  /** nn.Sequential(a, b, c)(x) is c(b(a(x))): each element a module op, spanning its constructor
   *  in __init__, so patterns match across the elements. Where __init__ chooses between
   *  Sequentials, the call is an `if` on that choice with one chain per branch. */
  private sequentialCall(text: string, defs: { guard?: Expr; items: { callee: string; span: Span }[] }[], x: Expr, node: SyntaxNode): Val {
    const chain = (items: { callee: string; span: Span }[]) => {
      let cur = x;
      items.forEach((item, i) => { cur = this.emit('module', `${text}[${i}]`, [cur], [], node, [item.callee], item.span).e; });
      return cur;
    };
    const [first, ...rest] = defs;
    if (!rest.length || !first.guard) return { e: chain(first.items) };
    const outer = this.out;
    const thenOut: Stmt[] = [];
    const elseOut: Stmt[] = [];
    this.out = thenOut;
    const a = chain(first.items);
    this.out = elseOut;
    const b = this.sequentialCall(text, rest, x, node).e;
    this.out = outer;
    const id = this.id();
    this.out.push({ k: 'if', cond: first.guard, then: thenOut, else: elseOut, phis: [{ id, v: text, ins: [a, b] }], span: this.span(node) });
    return { e: { k: 'ssa', id } };
  }

  private attribute(node: SyntaxNode): Val {
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

  private subscriptIndex(node: SyntaxNode, value: SyntaxNode): Expr {
    const subs = node.namedChildren.filter((c) => !sameNode(c, value) && notComment(c));
    const items = subs.map((c) => this.expr(c).e);
    return items.length === 1 ? items[0] : { k: 'tuple', items };
  }

  private subscript(node: SyntaxNode): Val {
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

  // ---- calls ------------------------------------------------------------------------------

  private call(node: SyntaxNode): Val {
    const fnNode = field(node, 'function')!;
    const argsNode = field(node, 'arguments');
    const args: Val[] = [];
    const kw: [string, Val][] = [];
    const lowerArgs = () => {
      if (argsNode?.type === 'generator_expression') { args.push({ e: { k: 'opaque', text: clip(argsNode.text) } }); return; }
      for (const a of argsNode?.namedChildren ?? []) {
        if (!notComment(a)) continue;
        if (a.type === 'keyword_argument') kw.push([field(a, 'name')!.text, this.expr(field(a, 'value')!)]);
        else args.push(this.expr(a));
      }
    };

    // super().m(...)
    if (fnNode.type === 'attribute' && field(fnNode, 'object')?.type === 'call' && field(field(fnNode, 'object')!, 'function')?.text === 'super') {
      lowerArgs();
      const m = field(fnNode, 'attribute')!.text;
      const { selfCls, defCls } = this.frame;
      const found = selfCls && defCls ? this.classes.findMethod(selfCls, m, defCls) : undefined;
      if (found) return this.inline(found.fn, args, kw, node, { e: { k: 'name', path: 'self' } }, found.cls);
      return this.emit('call', `super.${m}`, args.map((a) => a.e), kw.map(([k, v]) => [k, v.e]), node);
    }

    const callee = this.calleeVal(fnNode);
    lowerArgs();
    const argE = args.map((a) => a.e);
    const kwE: [string, Expr][] = kw.map(([k, v]) => [k, v.e]);

    if (callee.kind === 'inline') return this.inline(callee.fn.def, args, kw, node, callee.fn.selfVal, callee.fn.defCls);
    if (callee.kind === 'module') {
      const defs = argE.length === 1 && kwE.length === 0 ? this.sequentialDefs(callee.text) : undefined;
      if (defs) return this.sequentialCall(callee.text, defs, argE[0], node);
      return this.emit('module', callee.text, argE, kwE, node, callee.types);
    }
    if (callee.kind === 'method') {
      return this.tensorOp(callee.name, [callee.obj, ...argE], kwE, node, 'method');
    }
    if (callee.kind === 'qual') {
      const q = callee.qual;
      for (const ns of OP_NAMESPACES) {
        if (q.startsWith(`${ns}.`)) {
          const rest = q.slice(ns.length + 1);
          if (!rest.includes('.') && /^[a-z_][a-z0-9_]*$/.test(rest)) {
            return this.tensorOp(rest, argE, kwE, node, ns === 'torch.nn.functional' ? 'F' : 'fn');
          }
        }
      }
      if (!q.includes('.') && BUILTINS.has(q)) return this.emit('op', q, argE, kwE, node);
      const last = q.split('.').pop()!;
      const r = this.emit(callee.bound ? 'call' : 'unknown', q, argE, kwE, node);
      return /^[A-Z]/.test(last) ? { ...r, types: [q] } : r;
    }
    return this.emit('unknown', callee.text, argE, kwE, node);
  }

  private calleeVal(fnNode: SyntaxNode):
    | { kind: 'inline'; fn: NonNullable<Val['fn']> }
    | { kind: 'module'; text: string; types: string[] }
    | { kind: 'method'; name: string; obj: Expr }
    | { kind: 'qual'; qual: string; bound: boolean }
    | { kind: 'unknown'; text: string } {
    if (fnNode.type === 'identifier') {
      const v = this.frame.env.get(fnNode.text);
      if (v?.fn) return { kind: 'inline', fn: v.fn };
      if (v?.types) return { kind: 'module', text: fnNode.text, types: v.types };
      if (v) return { kind: 'unknown', text: fnNode.text };
      const b = this.frame.syms.bindings.get(fnNode.text);
      if (b) {
        const r = this.resolver.resolveName(this.frame.syms, fnNode.text)!;
        if (r.k === 'function') return { kind: 'inline', fn: { def: r.def } };
        return { kind: 'qual', qual: r.k === 'class' ? r.def.qual : r.qual, bound: true };
      }
      return { kind: 'qual', qual: fnNode.text, bound: BUILTINS.has(fnNode.text) };
    }
    if (fnNode.type === 'attribute') {
      const objNode = field(fnNode, 'object')!;
      const m = field(fnNode, 'attribute')!.text;
      const obj = this.expr(objNode);
      if (obj.e.k === 'name' && obj.e.path === 'self' && this.frame.selfCls) {
        const a = this.attrVal(m);
        if (a?.fn) return { kind: 'inline', fn: a.fn };
        if (a?.types) return { kind: 'module', text: `self.${m}`, types: a.types };
        // `self.act = nn.functional.gelu`: calling the attribute calls that function
        const defs = this.frame.selfCls.attrs.filter((x) => x.name === m);
        if (defs.length === 1 && defs[0].value.k === 'name' && defs[0].value.path.includes('.')) return { kind: 'qual', qual: defs[0].value.path, bound: true };
        return { kind: 'unknown', text: `self.${m}` };
      }
      if (obj.types && obj.e.k === 'name') {
        // a method of a submodule: self.encoder.get_extended_mask(...)
        return { kind: 'qual', qual: `${obj.types[0]}.${m}`, bound: true };
      }
      if (obj.e.k === 'name' && !this.frame.env.has(obj.e.path.split('.')[0]) && !obj.e.path.startsWith('self.')) {
        const path = `${obj.e.path}.${m}`;
        const bound = this.frame.syms.bindings.has(obj.e.path.split('.')[0]) || obj.e.path.includes('.');
        // a plain name no module-level symbol binds is a caller's value passed into an inlined
        // helper (`rotate_half(q)`: `x.chunk` is `q.chunk`), not a module path
        if (!bound && (TENSOR_METHODS.has(m) || TENSOR_METHODS.has(m.replace(/_$/, '')) || m in CAST_METHODS)) return { kind: 'method', name: m, obj: obj.e };
        const r = bound ? this.resolver.resolveQual(path) : undefined;
        if (r?.k === 'function') {
          const cls = r.def.owner ? this.classes.info(r.def.owner) : undefined;
          return { kind: 'inline', fn: { def: r.def, defCls: cls } };
        }
        return { kind: 'qual', qual: r?.k === 'class' ? r.def.qual : path, bound };
      }
      if (TENSOR_METHODS.has(m) || TENSOR_METHODS.has(m.replace(/_$/, '')) || m in CAST_METHODS) return { kind: 'method', name: m, obj: obj.e };
      return { kind: 'unknown', text: `.${m}` };
    }
    const v = this.expr(fnNode);
    if (v.fn) return { kind: 'inline', fn: v.fn };
    if (v.types) return { kind: 'module', text: exprText(v.e), types: v.types };
    return { kind: 'unknown', text: `(${clip(fnNode.text, 60)})` };
  }

  /** Emits a canonical tensor op, normalising argument spellings. */
  private tensorOp(name0: string, args: Expr[], kw: [string, Expr][], node: SyntaxNode, from: 'F' | 'fn' | 'method'): Val {
    let name = canonicalName(name0);
    args = [...args];
    kw = [...kw];
    if (from === 'method' && name0 in CAST_METHODS && args.length === 1 && kw.length === 0) {
      return this.emit('op', 'to', args, [['dtype', { k: 'name', path: CAST_METHODS[name0] }]], node);
    }
    if ((name === 'to' || name === 'type') && args.length === 2 && args[1].k === 'name' && isDtypeName(args[1].path)) {
      return this.emit('op', 'to', [args[0]], [['dtype', args[1]], ...kw], node);
    }
    if (name === 'einsum') {
      const mm = this.einsumAsMatmul(args, node);
      if (mm) return mm;
    }
    if (name === 'baddbmm') {
      const mm = this.baddbmmAsMatmul(args, kw, node);
      if (mm) return mm;
    }
    const sig = POSITIONAL_TO_KW[from === 'F' ? `F.${name}` : name] ?? (from === 'F' ? POSITIONAL_TO_KW[name] : undefined);
    const dataArgs = 1; // the input tensor (or, for cat/stack, the list of tensors) stays positional
    if (sig && args.length > dataArgs) {
      const extra = args.splice(dataArgs);
      extra.forEach((a, i) => { if (sig[i] && a.k !== 'star') kw.push([sig[i], a]); else args.push(a); });
    }
    const renames = KW_RENAMES[name];
    if (renames) kw = kw.map(([k, v]) => [renames[k] ?? k, v]);
    if (name === 'transpose' && args.length === 3) {
      const [a, b] = [args[1], args[2]];
      if (a.k === 'const' && b.k === 'const' && typeof a.v === 'number' && typeof b.v === 'number' && a.v < 0 && b.v < 0 && a.v > b.v) {
        args = [args[0], b, a];
      }
    }
    return this.emit('op', name, args, kw, node);
  }

  /** `baddbmm(input, b1, b2, beta=β, alpha=α)` is `add(mul(matmul(b1, b2), α), mul(input, β))`,
   *  with the factors left out where they are 1 and the input where β is 0 (Bloom's ALiBi added to
   *  the scores, GPT-2's upcast scores written into an empty tensor). */
  private baddbmmAsMatmul(args: Expr[], kw: [string, Expr][], node: SyntaxNode): Val | undefined {
    const named = new Map(kw);
    const known = new Set(['input', 'batch1', 'batch2', 'beta', 'alpha']);
    if (kw.some(([k]) => !known.has(k)) || args.some((a) => a.k === 'star')) return undefined;
    const [input, b1, b2, beta, alpha] = ['input', 'batch1', 'batch2', 'beta', 'alpha'].map((k, i) => args[i] ?? named.get(k));
    if (!input || !b1 || !b2 || args.length > 3) return undefined;
    const isConst = (e: Expr | undefined, v: number) => e?.k === 'const' && e.v === v;
    let out = this.emit('op', 'matmul', [b1, b2], [], node);
    if (alpha && !isConst(alpha, 1)) out = this.emit('op', 'mul', [out.e, alpha], [], node);
    if (isConst(beta, 0)) return out;
    const added = beta && !isConst(beta, 1) ? this.emit('op', 'mul', [input, beta], [], node).e : input;
    return this.emit('op', 'add', [out.e, added], [], node);
  }

  /** `einsum("bhqd,bhkd->bhqk", q, k)` is `matmul(q, transpose(k, -2, -1))`. */
  private einsumAsMatmul(args: Expr[], node: SyntaxNode): Val | undefined {
    const [eq, a, b] = args;
    if (args.length !== 3 || eq.k !== 'const' || typeof eq.v !== 'string') return undefined;
    const m = /^\s*([a-z.]+)\s*,\s*([a-z.]+)\s*->\s*([a-z.]+)\s*$/i.exec(eq.v.replace(/\.\.\./g, '#'));
    if (!m) return undefined;
    const [x, y, z] = [m[1], m[2], m[3]];
    if (x.length < 2 || x.length !== y.length || x.length !== z.length) return undefined;
    const batch = x.slice(0, -2);
    if (y.slice(0, -2) !== batch || z.slice(0, -2) !== batch) return undefined;
    const [i, j] = x.slice(-2);
    const [p, q] = y.slice(-2);
    const [r, s] = z.slice(-2);
    if (r !== i || new Set(x + y + z).size !== batch.length + 3) return undefined;
    if (p === j && q === s) return this.emit('op', 'matmul', [a, b], [], node);
    if (q === j && p === s) {
      const t = this.emit('op', 'transpose', [b, num(-2), num(-1)], [], node);
      return this.emit('op', 'matmul', [a, t.e], [], node);
    }
    return undefined;
  }

  private inline(def: FuncDef, args: Val[], kw: [string, Val][], node: SyntaxNode, selfVal?: Val, defCls?: ClassInfo): Val {
    if (this.stack.includes(def.qual) || this.stack.length > LIMITS.inlineDepth) {
      const why = this.stack.includes(def.qual) ? `recursive call to ${def.qual} is not inlined (cycle ${[...this.stack.slice(this.stack.indexOf(def.qual)), def.qual].map(shortName).join(' -> ')})` : `call to ${def.qual} is not inlined: helpers nested deeper than ${LIMITS.inlineDepth}`;
      this.warn(node, 'inline-cut', why);
      return this.emit('call', def.qual, args.map((a) => a.e), kw.map(([k, v]) => [k, v.e]), node);
    }
    const syms = this.resolver.symbolsOf(def.module);
    // Long helpers (checkpoint loading, generation utilities) are library code, not architecture:
    // they stay resolved calls instead of being inlined.
    // TorchScript functions are compiled on their own: their code is not part of the caller's.
    if (syms && decoratorsOf(def.node, syms, this.resolver).some(isTorchScript)) {
      return this.emit('call', def.qual, args.map((a) => a.e), kw.map(([k, v]) => [k, v.e]), node);
    }
    const lines = syms ? posAt(syms.parsed.source, def.node.endIndex).line - posAt(syms.parsed.source, def.node.startIndex).line : 0;
    if (!syms || lines > LIMITS.inlineMaxLines) return this.emit('call', def.qual, args.map((a) => a.e), kw.map(([k, v]) => [k, v.e]), node);
    const env = new Map<string, Val>();
    // Closures see the enclosing frame's names.
    if (def.qual.includes('<locals>')) for (const [k, v] of this.frame.env) env.set(k, v);
    const positional = [...args];
    const kwMap = new Map(kw);
    let kwOnly = false;
    const params = (field(def.node, 'parameters')?.namedChildren ?? []).filter(notComment);
    const isStatic = isStaticMethod(def.node);
    let first = true;
    const sscope = { syms, resolver: this.resolver, env: new Map<string, Expr>(), locals: new Set<string>() };
    for (const p of params) {
      if (p.type === 'keyword_separator') { kwOnly = true; continue; }
      if (p.type === 'positional_separator') continue;
      const [pname] = paramNames(p);
      if (!pname) continue;
      if (first && def.owner && !isStatic && selfVal) { env.set(pname, selfVal); first = false; continue; }
      first = false;
      if (p.type === 'list_splat_pattern') { env.set(pname, { e: { k: 'tuple', items: positional.splice(0).map((a) => a.e) } }); kwOnly = true; continue; }
      if (p.type === 'dictionary_splat_pattern') {
        env.set(pname, { e: { k: 'dict', items: [...kwMap].map(([k, v]) => [{ k: 'const', v: k }, v.e] as [Expr, Expr]) } });
        kwMap.clear();
        continue;
      }
      let v: Val | undefined;
      if (!kwOnly && positional.length) v = positional.shift();
      else if (kwMap.has(pname)) { v = kwMap.get(pname); kwMap.delete(pname); }
      if (!v) {
        const d = field(p, 'value');
        v = d ? { e: staticExpr(d, sscope) } : { e: { k: 'name', path: pname } };
      }
      env.set(pname, v);
    }
    const saved = { frame: this.frame, out: this.out };
    const callSite = this.span(node);
    const selfCls = def.owner ? (selfVal && this.frame.selfCls ? this.frame.selfCls : defCls) : undefined;
    this.frame = { syms, selfCls, defCls: defCls ?? (def.owner ? this.classes.info(def.owner) : undefined), env };
    this.stack.push(def.qual);
    if (!this.via.length) this.callSite = callSite;
    this.via.push(def.qual);
    let flow: Flow;
    try {
      flow = this.block(field(def.node, 'body'));
    } finally {
      this.stack.pop();
      this.via.pop();
      this.frame = saved.frame;
      this.out = saved.out;
    }
    return { e: flow.terminal === 'return' ? flow.ret ?? NONE : NONE };
  }

  // ---- emission ---------------------------------------------------------------------------

  private id(): number {
    return this.nextId++;
  }

  private emit(kind: OpKind, callee: string, args: Expr[], kw: [string, Expr][], node: SyntaxNode, types?: string[], span?: Span): Val {
    const id = this.id();
    const op: Op = { k: 'op', id, kind, callee, args, kw, span: span ?? this.span(node) };
    if (types?.length) op.type = types;
    else if (kind === 'module') op.type = ['?'];
    if (this.via.length) { op.via = [...this.via]; if (this.callSite) op.site = this.callSite; }
    if (++this.opCount === LIMITS.opsPerMethod) this.limit(node, `more than ${LIMITS.opsPerMethod} ops in one method: the rest is not analysed`);
    if (this.opCount <= LIMITS.opsPerMethod) this.out.push(op);
    return { e: { k: 'ssa', id } };
  }

  private span(node: SyntaxNode): Span {
    return spanOf(this.frame.syms.parsed.source, node, this.ownerPath);
  }

  private note(node: SyntaxNode, text: string): void {
    this.out.push({ k: 'note', text, span: this.span(node) });
  }

  private warn(node: SyntaxNode, code: string, message: string): void {
    const src = this.frame.syms.parsed.source;
    const p = posAt(src, node.startIndex);
    if (!this.diagnostics.some((d) => d.code === code && d.line === p.line && d.file === src.path)) {
      this.diagnostics.push({ severity: 'warning', code, file: src.path, line: p.line, col: p.col, message });
    }
  }

  private limit(node: SyntaxNode, message: string): void {
    if (message.startsWith('more than')) this.limitHit = true;
    this.warn(node, 'limit', message);
  }
}

function num(v: number): Expr {
  return { k: 'const', v, raw: String(v) };
}

function shortName(q: string): string {
  return q.split('.').slice(-2).join('.');
}

export function isTorchScript(decorator: string): boolean {
  return /^torch\.jit\.(script|script_if_tracing)$/.test(decorator);
}

function decoratorsOf(fn: SyntaxNode, syms: FileSymbols, resolver: Resolver): string[] {
  const parent = fn.parent;
  if (parent?.type !== 'decorated_definition') return [];
  return parent.namedChildren.filter((d) => d.type === 'decorator').map((d) => {
    const expr = d.namedChildren[0];
    const target = expr?.type === 'call' ? field(expr, 'function') : expr;
    const dotted = target ? dottedOf(target) : undefined;
    return dotted ? qualify({ syms, resolver }, dotted) : clip(d.text.replace(/^@/, ''), 60);
  });
}

function isStaticMethod(fn: SyntaxNode): boolean {
  const parent = fn.parent;
  return parent?.type === 'decorated_definition' && parent.namedChildren.some((d) => d.type === 'decorator' && /staticmethod/.test(d.text));
}

function collectAssigned(node: SyntaxNode | null, out: Set<string>): void {
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

export function sameExpr(a: Expr, b: Expr): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
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
