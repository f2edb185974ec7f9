// Lowering of a method body to SSA dataflow (DESIGN §3): one op per call or operator with its
// canonical name, helpers inlined with provenance, branches kept as guarded paths with phis,
// loops over ModuleLists typed by their elements. This file holds the statements; expressions,
// calls and emission are the stages below it (lower-expr, lower-call, lower-base).
import type { Expr, IfStmt, Method, Param, Phi, Stmt } from '../dsl/ir.js';
import type { SyntaxNode } from '../parse/python.js';
import { BINARY_OPS, TENSOR_METHODS } from './canon.js';

/** Ops whose result may share its first operand's memory: a write to it is a write to that. */
const VIEW_OPS = new Set(['view', 'view_as', 'reshape', 'reshape_as', 'transpose', 'permute', 'unsqueeze', 'squeeze', 'expand', 'expand_as',
  'narrow', 'select', 'getitem', 't', 'flatten', 'unflatten', 'as_strided', 'contiguous', 'detach', 'movedim', 'swapaxes', 'diagonal',
  'unfold', 'chunk', 'split', 'unbind', 'real', 'imag', 'view_as_real', 'view_as_complex', 'getattr']);
import { spanOf, type ClassInfo } from './classes.js';
import { CallLowerer } from './lower-call.js';
import { LIMITS, NONE, collectAssigned, decoratorsOf, num, sameExpr, type Flow, type Val } from './lower-support.js';
import { clip, dottedOf, identifiersOf, notComment, staticExpr } from './static.js';
import { field, paramNames, type FuncDef } from './symbols.js';

export { LIMITS, exprText, isTorchScript, sameExpr } from './lower-support.js';

/** A block's statements without comments, listed once: a helper's body is lowered again at
 *  every call site it is inlined into. Only read. Only blocks that hold a comment are listed
 *  here: the others' statements are their named children as they are. */
const blockStatements = new WeakMap<SyntaxNode, SyntaxNode[]>();

type Rest = { list: SyntaxNode[]; from: number };

export class MethodLowerer extends CallLowerer {
  /** Names deleted from an env so far: an `if` merges into its branch's env only when none was. */
  private envDeletes = 0;

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
      const cls = param.default && this.layerClass(param.default);
      env.set(names[0], { e: { k: 'name', path: names[0] }, ...(cls ? { cls } : {}) });
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

  protected block(node: SyntaxNode | null): Flow {
    if (!node) return { terminal: null };
    const named = node.namedChildren;
    if (named.every(notComment)) return this.stmts(named, 0);
    let list = blockStatements.get(node);
    if (!list) blockStatements.set(node, (list = named.filter(notComment)));
    return this.stmts(list, 0);
  }

  protected stmts(list: SyntaxNode[], from: number): Flow {
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
            const r = this.ifStmt(s, { list, from: i + 1 });
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

  protected exprStmt(s: SyntaxNode): void {
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
      if (obj?.type === 'identifier' && m.endsWith('_') && !m.startsWith('_') && TENSOR_METHODS.has(m.slice(0, -1)) && v.e.k === 'ssa') {
        const before = this.frame.env.get(obj.text);
        this.assign(obj, v, s);
        this.writtenThrough(before, v, e);
      }
      // `torch.add(x, 1, out=x)` writes its result into x
      const out = e.type === 'call' ? field(e, 'arguments')?.namedChildren.find((a) => a.type === 'keyword_argument' && field(a, 'name')?.text === 'out') : undefined;
      const outName = out && field(out, 'value');
      if (outName?.type === 'identifier' && v.e.k === 'ssa') {
        const before = this.frame.env.get(outName.text);
        this.assign(outName, v, s);
        this.writtenThrough(before, v, e);
      }
    }
  }

  /** `a, b = (f(t) for t in X.chunk(2, dim=-1))`: as many values as targets, each the body with
   *  the loop variable bound to one item. True when handled. */
  protected unpackGenerator(left: SyntaxNode, right: SyntaxNode, stmt: SyntaxNode): boolean {
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
    if (saved) this.frame.env.set(loopVar.text, saved); else { this.frame.env.delete(loopVar.text); this.envDeletes++; }
    // the generated tuple unpacked: element i spans its target name, as `a, b = f(x)` does
    const all: Expr = { k: 'tuple', items: values.map((v) => v.e) };
    targets.forEach((t, i) => this.assign(t, this.emit('op', 'getitem', [all, num(i)], [], t), stmt));
    return true;
  }

  protected assign(target: SyntaxNode, v: Val, stmt: SyntaxNode): void {
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
        if (baseNode.type === 'identifier') { this.frame.env.set(baseNode.text, r); this.writtenThrough(base, r, stmt); }
        return;
      }
      default: return;
    }
  }

  /** An in-place write to a view (`v = x.view(-1); v.add_(1)`) changes the tensor it views:
   *  every name still bound to that tensor (and to the tensors it views in turn) is rebound to a
   *  value that says so, so no pattern reads it as the value it held before. */
  private writtenThrough(before: Val | undefined, written: Val, node: SyntaxNode, depth = 0): void {
    const def = before?.e.k === 'ssa' ? this.opsById.get(before.e.id) : undefined;
    if (!def || !VIEW_OPS.has(def.callee) || !def.args[0] || depth > 8) return;
    const base = def.args[0];
    // a base no name holds any more (`q = linear(x).reshape(...)` then `q.mul_(s)`) is read by
    // nothing later: no op is needed for it
    const holders = [...this.frame.env].filter(([, val]) => sameExpr(val.e, base)).map(([name]) => name);
    const after = holders.length ? this.emit('op', 'written_through_view', [base, written.e], [], node) : written;
    for (const name of holders) this.frame.env.set(name, after);
    this.writtenThrough({ e: base }, after, node, depth + 1);
  }

  /** `rest`: the statements after the `if` (list[from..]), lowered as a branch's continuation
   *  when the other returns early; passed by position, as an `if` rarely consumes them. */
  protected ifStmt(s: SyntaxNode, rest: Rest): { flow: Flow; consumedRest: boolean } {
    const alts = s.namedChildren.filter((c) => c.type === 'elif_clause' || c.type === 'else_clause');
    return this.ifChain(s, field(s, 'condition')!, field(s, 'consequence'), alts, rest);
  }

  protected ifChain(node: SyntaxNode, condNode: SyntaxNode, thenNode: SyntaxNode | null, alts: SyntaxNode[], rest: Rest): { flow: Flow; consumedRest: boolean } {
    const cond = this.expr(condNode).e;
    const deletes = this.envDeletes;
    const before = new Map(this.frame.env);
    const outer = this.out;
    const thenOut: Stmt[] = [];
    const elseOut: Stmt[] = [];
    this.out = thenOut;
    let thenFlow = this.block(thenNode);
    let thenEnv = this.frame.env;
    // With no `else`, the other path takes `before` itself: it runs nothing unless it is the code
    // after an early return, and then no merge reads `before` afterwards.
    this.frame.env = alts.length ? new Map(before) : before;
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
    if (!consumedRest && rest.from < rest.list.length) {
      if (thenFlow.terminal === 'return' && !elseFlow.terminal) {
        elseFlow = this.stmts(rest.list, rest.from);
        elseEnv = this.frame.env;
        consumedRest = true;
      } else if (elseFlow.terminal === 'return' && !thenFlow.terminal) {
        this.out = thenOut;
        this.frame.env = thenEnv;
        thenFlow = this.stmts(rest.list, rest.from);
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
    else this.frame.env = this.merge(deletes === this.envDeletes ? thenEnv : new Map(before), thenEnv, elseEnv, phis);
    this.out.push(stmt);
    return { flow, consumedRest };
  }

  /** The env after an `if` whose branches both continue: `base` (the env before it) with each
   *  name the branches bind alike, and a phi for each they bind apart, in the order of the names
   *  of `thenEnv` and then those only in `elseEnv`. When no name was deleted meanwhile, `thenEnv`
   *  is its own base: it holds every name bound before the `if`, in their order, followed by
   *  those the branch added, and each of its names already has the value the merge keeps. */
  private merge(base: Map<string, Val>, thenEnv: Map<string, Val>, elseEnv: Map<string, Val>, phis: Phi[]): Map<string, Val> {
    const inPlace = base === thenEnv;
    // forEach: an entries loop makes a pair per name, and every `if` walks every name in scope
    thenEnv.forEach((a, name) => {
      const b = elseEnv.get(name);
      if (a && b && (a === b || sameExpr(a.e, b.e))) { if (!inPlace) base.set(name, a); } else base.set(name, this.phi(phis, name, a, b));
    });
    elseEnv.forEach((b, name) => { if (!thenEnv.has(name)) base.set(name, this.phi(phis, name, undefined, b)); });
    return base;
  }

  private phi(phis: Phi[], name: string, a: Val | undefined, b: Val | undefined): Val {
    const id = this.id();
    phis.push({ id, v: name, ins: [a?.e ?? NONE, b?.e ?? NONE] });
    const types = a?.types || b?.types ? [...new Set([...(a?.types ?? []), ...(b?.types ?? [])])] : [];
    return { e: { k: 'ssa', id }, ...(types.length ? { types } : {}) };
  }

  protected loop(s: SyntaxNode): void {
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

  protected peekElems(node: SyntaxNode): string[] | undefined {
    const d = dottedOf(node);
    if (!d?.startsWith('self.') || d.split('.').length !== 2) return undefined;
    return this.attrVal(d.slice(5))?.elems;
  }

  protected tryStmt(s: SyntaxNode): Flow {
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
}
