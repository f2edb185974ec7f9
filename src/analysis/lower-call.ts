// Lowering of calls: submodule and Sequential calls, canonical tensor ops with normalised
// arguments, and helpers inlined with their provenance.
import type { Expr, Span, Stmt } from '../dsl/ir.js';
import type { SyntaxNode } from '../parse/python.js';
import { posAt } from '../parse/source.js';
import { BUILTINS, CAST_METHODS, KW_RENAMES, OP_NAMESPACES, POSITIONAL_TO_KW, TENSOR_METHODS, canonicalName, isDtypeName } from './canon.js';
import { typeName, type ClassInfo } from './classes.js';
import { layerClassOf, sequentialArgs } from './layer-class.js';
import { ExprLowerer } from './lower-expr.js';
import { LIMITS, NONE, exprText, isPropertyMethod, isStaticMethod, isTorchScriptFunction, num, shortName, type Flow, type Val } from './lower-support.js';
import { clip, notComment, staticExpr } from './static.js';
import { field, paramNames, type FuncDef } from './symbols.js';

export abstract class CallLowerer extends ExprLowerer {
  protected sequentialDefs(text: string): { guard?: Expr; items: { callee: string; span: Span }[] }[] | undefined {
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
  protected sequentialItems(a: ClassInfo['attrs'][number]): { callee: string; span: Span }[] | undefined {
    const cls = this.frame.selfCls!;
    if (a.value.k !== 'call' || !/(^|\.)Sequential$/.test(a.value.callee) || a.value.kw.length || !a.value.args.length) return undefined;
    const items = sequentialArgs(a.value.args);
    if (!items.every((x) => x.k === 'call' || (x.k === 'index' && x.base.k === 'name'))) return undefined;
    const home = a.from ? this.classes.resolver.resolveQual(a.from) : undefined;
    const classFile = home?.k === 'class' ? this.resolver.symbolsOf(home.def.module)?.parsed.source.path : cls.syms.parsed.source.path;
    // a Sequential a factory function builds is edited where the factory builds it
    const file = a.built?.file ?? classFile;
    if (!file) return undefined;
    const span: Span = { ...(a.built ?? a.span) };
    delete span.file;
    if (file !== this.ownerPath) span.file = file;
    return items.map((x) => ({ callee: layerClassOf(x, a.defaults) ?? typeName(x), span }));
  }

  /** nn.Sequential(a, b, c)(x) is c(b(a(x))): each element a module op, spanning its constructor
   *  in __init__, so patterns match across the elements. Where __init__ chooses between
   *  Sequentials, the call is an `if` on that choice with one chain per branch. */
  protected sequentialCall(text: string, defs: { guard?: Expr; items: { callee: string; span: Span }[] }[], x: Expr, node: SyntaxNode): Val {
    const chain = (items: { callee: string; span: Span }[]) => {
      let cur = x;
      items.forEach((item, i) => { cur = this.emit('module', `${text}[${i}]`, [cur], [], node, [item.callee], item.span).e; });
      // the chain's value is the call's, named where the call is (an inlined helper's values are
      // named through its call site instead)
      const last = cur.k === 'ssa' && !this.via.length ? this.opsById.get(cur.id) : undefined;
      if (last && items.length) last.called = this.span(node);
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

  // ---- calls ------------------------------------------------------------------------------

  protected call(node: SyntaxNode): Val {
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
      if (last === 'partial') {
        const cls = this.layerClass({ k: 'call', callee: q, args: argE, kw: kwE });
        if (cls) return { ...r, cls };
      }
      return /^[A-Z]/.test(last) ? { ...r, types: [q] } : r;
    }
    // a layer class chosen by a parameter builds its default class unless a caller passes another
    return this.emit('unknown', callee.text, argE, kwE, node, callee.kind === 'unknown' && callee.cls ? [callee.cls] : undefined);
  }

  protected calleeVal(fnNode: SyntaxNode):
    | { kind: 'inline'; fn: NonNullable<Val['fn']> }
    | { kind: 'module'; text: string; types: string[] }
    | { kind: 'method'; name: string; obj: Expr }
    | { kind: 'qual'; qual: string; bound: boolean }
    | { kind: 'unknown'; text: string; cls?: string } {
    if (fnNode.type === 'identifier') {
      const v = this.frame.env.get(fnNode.text);
      if (v?.fn) return { kind: 'inline', fn: v.fn };
      if (v?.types) return { kind: 'module', text: fnNode.text, types: v.types };
      if (v?.cls) return { kind: 'unknown', text: fnNode.text, cls: v.cls };
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
        if (a?.fn && isPropertyMethod(a.fn.def.node)) return { kind: 'unknown', text: `self.${m}` };
        if (a?.fn) return { kind: 'inline', fn: a.fn };
        if (a?.types) return { kind: 'module', text: `self.${m}`, types: a.types };
        if (a?.cls) return { kind: 'unknown', text: `self.${m}`, cls: a.cls };
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
  protected tensorOp(name0: string, args: Expr[], kw: [string, Expr][], node: SyntaxNode, from: 'F' | 'fn' | 'method'): Val {
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
  protected baddbmmAsMatmul(args: Expr[], kw: [string, Expr][], node: SyntaxNode): Val | undefined {
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

  /** `einsum("bhqd,bhkd->bhqk", q, k)` is `matmul(q, transpose(k, -2, -1))`; spaces between the
   *  letters (`'b i d, b j d -> b i j'`) mean nothing, and either operand may hold its contracted
   *  axis first (`"bct,bcs->bts"`, channels first: `matmul(transpose(q, -2, -1), k)`). */
  protected einsumAsMatmul(args: Expr[], node: SyntaxNode): Val | undefined {
    const [eq, a, b] = args;
    if (args.length !== 3 || eq.k !== 'const' || typeof eq.v !== 'string') return undefined;
    const m = /^([a-z#]+),([a-z#]+)->([a-z#]+)$/i.exec(eq.v.replace(/\.\.\./g, '#').replace(/\s+/g, ''));
    if (!m) return undefined;
    const [x, y, z] = [m[1], m[2], m[3]];
    if (x.length < 2 || x.length !== y.length || x.length !== z.length) return undefined;
    const batch = x.slice(0, -2);
    if (y.slice(0, -2) !== batch || z.slice(0, -2) !== batch || new Set(x + y + z).size !== batch.length + 3) return undefined;
    // rows r and columns c of the result, taken from the operand that holds r (the second one in
    // `"bts,bcs->bct"`: v times the transposed weights); k, the axis summed over, in both
    const [r, c] = z.slice(-2);
    const [[p, u], [q, w]] = x.slice(-2).includes(r) ? [[a, x], [b, y]] : [[b, y], [a, x]];
    const k = [...u.slice(-2)].find((ch) => ch !== r);
    if (!k || (u.slice(-2) !== `${r}${k}` && u.slice(-2) !== `${k}${r}`)) return undefined;
    if (w.slice(-2) !== `${k}${c}` && w.slice(-2) !== `${c}${k}`) return undefined;
    const swap = (e: Expr) => this.emit('op', 'transpose', [e, num(-2), num(-1)], [], node).e;
    const left = u.slice(-2) === `${r}${k}` ? p : swap(p);
    const right = w.slice(-2) === `${k}${c}` ? q : swap(q);
    return this.emit('op', 'matmul', [left, right], [], node);
  }

  protected inline(def: FuncDef, args: Val[], kw: [string, Val][], node: SyntaxNode, selfVal?: Val, defCls?: ClassInfo): Val {
    if (this.stack.includes(def.qual) || this.stack.length > LIMITS.inlineDepth) {
      const why = this.stack.includes(def.qual) ? `recursive call to ${def.qual} is not inlined (cycle ${[...this.stack.slice(this.stack.indexOf(def.qual)), def.qual].map(shortName).join(' -> ')})` : `call to ${def.qual} is not inlined: helpers nested deeper than ${LIMITS.inlineDepth}`;
      this.warn(node, 'inline-cut', why);
      return this.emit('call', def.qual, args.map((a) => a.e), kw.map(([k, v]) => [k, v.e]), node);
    }
    const syms = this.resolver.symbolsOf(def.module);
    // Long helpers (checkpoint loading, generation utilities) are library code, not architecture:
    // they stay resolved calls instead of being inlined.
    // TorchScript functions are compiled on their own: their code is not part of the caller's.
    if (syms && isTorchScriptFunction(def.node, syms, this.resolver)) {
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
    // the span of the call in the caller's file, wanted only where this inlining starts
    const callSite = this.via.length ? undefined : this.span(node);
    const selfCls = def.owner ? (selfVal && this.frame.selfCls ? this.frame.selfCls : defCls) : undefined;
    this.frame = { syms, selfCls, defCls: defCls ?? (def.owner ? this.classes.info(def.owner) : undefined), env };
    this.stack.push(def.qual);
    if (callSite) this.callSite = callSite;
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

}
