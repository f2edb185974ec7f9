// nn.Module classes: their bases, method resolution order and the attributes __init__ sets,
// including those set by base classes' __init__.
import type { Attr, Expr, Span } from '../dsl/ir.js';
import type { SyntaxNode } from '../parse/python.js';
import { byteAt, posAt, type SourceText } from '../parse/source.js';
import type { Resolver } from './resolve.js';
import { dottedOf, identifiersOf, qualify, staticExpr, type StaticScope } from './static.js';
import { field, paramNames, type ClassDef, type FileSymbols, type FuncDef } from './symbols.js';
import { annotatedConfigs, defaultsRead } from './configs.js';
import { defaultClassOf, heldParam, isClassName } from './layer-class.js';
import { LayerFactories } from './layer-factories.js';
import { LocalLists } from './local-lists.js';

export interface ClassInfo {
  def: ClassDef;
  syms: FileSymbols;
  bases: { qual: string; info?: ClassInfo }[];
  isModule: boolean;
  /** This class first, then its bases depth-first (Python's MRO for single inheritance). */
  mro: ClassInfo[];
  attrs: Attr[];
  /** Set while __init__ is being analysed, to cut inheritance cycles. */
  busy?: boolean;
}

const EXTERNAL_MODULE_BASE = /(^torch\.nn\.)|(PreTrainedModel|Module|ModuleUtilsMixin)$/;

export function spanOf(src: SourceText, node: SyntaxNode, owner: string): Span {
  const span: Span = {
    start: byteAt(src, node.startIndex), end: byteAt(src, node.endIndex),
    from: posAt(src, node.startIndex), to: posAt(src, node.endIndex),
  };
  if (src.path !== owner) span.file = src.path;
  return span;
}

export class ClassTable {
  private infos = new Map<ClassDef, ClassInfo>();
  private readonly factories: LayerFactories;
  constructor(readonly resolver: Resolver) {
    this.factories = new LayerFactories(resolver);
  }

  info(def: ClassDef): ClassInfo | undefined {
    const known = this.infos.get(def);
    if (known) return known;
    const syms = this.resolver.symbolsOf(def.module);
    if (!syms) return undefined;
    const info: ClassInfo = { def, syms, bases: [], isModule: false, mro: [], attrs: [], busy: true };
    this.infos.set(def, info);
    for (const b of def.baseNodes) {
      const d = dottedOf(b);
      if (!d) continue;
      const qual = qualify({ syms, resolver: this.resolver }, d);
      const r = this.resolver.resolveQual(qual);
      const base = r.k === 'class' ? this.info(r.def) : undefined;
      info.bases.push({ qual, info: base?.busy ? undefined : base });
    }
    info.mro = [info];
    for (const b of info.bases) for (const c of b.info?.mro ?? []) if (!info.mro.includes(c)) info.mro.push(c);
    info.isModule = def.methods.has('forward')
      || info.bases.some((b) => (b.info ? b.info.isModule : EXTERNAL_MODULE_BASE.test(b.qual)));
    info.attrs = this.initAttrs(info);
    info.busy = false;
    return info;
  }

  /** The method `name` as found along the MRO, starting after `after` when given (for super()). */
  findMethod(info: ClassInfo, name: string, after?: ClassInfo): { fn: FuncDef; cls: ClassInfo } | undefined {
    let mro = info.mro;
    if (after) mro = mro.slice(mro.indexOf(after) + 1);
    for (const c of mro) {
      const fn = c.def.methods.get(name);
      if (fn) return { fn, cls: c };
    }
    return undefined;
  }

  /**
   * `self.stem = conv_bn(3, 32, 2)` where `def conv_bn(...): return nn.Sequential(...)`: the
   * attribute is what the factory returns, with its parameters substituted (one level deep).
   */
  private throughFactory(value: Expr, depth = 0): { value: Expr; built?: Span } {
    if (value.k !== 'call' || depth > 2) return { value };
    const r = this.resolver.resolveQual(value.callee);
    if (r.k !== 'function' || r.def.owner) return { value };
    const body = field(r.def.node, 'body')?.namedChildren.filter((c) => c.type !== 'comment' && !(c.type === 'expression_statement' && c.namedChildren[0]?.type === 'string')) ?? [];
    if (body.length !== 1 || body[0].type !== 'return_statement' || !body[0].namedChildren[0]) return { value };
    const syms = this.resolver.symbolsOf(r.def.module);
    if (!syms) return { value };
    const env = new Map<string, Expr>();
    const params = (field(r.def.node, 'parameters')?.namedChildren ?? []).filter((p) => p.type !== 'comment');
    params.forEach((p, i) => {
      const [name] = paramNames(p);
      if (!name) return;
      const given = value.kw.find(([k]) => k === name)?.[1] ?? (i < value.args.length && value.args[i].k !== 'star' ? value.args[i] : undefined);
      const def = field(p, 'value');
      env.set(name, given ?? (def ? staticExpr(def, { syms, resolver: this.resolver, env: new Map(), locals: new Set() }) : { k: 'name', path: name }));
    });
    const returned = body[0].namedChildren[0];
    const out = staticExpr(returned, { syms, resolver: this.resolver, env, locals: new Set() });
    const inner = this.throughFactory(out, depth + 1);
    return { value: inner.value, built: inner.built ?? spanOf(syms.parsed.source, returned, '') };
  }

  private initAttrs(info: ClassInfo): Attr[] {
    const init = info.def.methods.get('__init__');
    const firstBase = info.bases.find((b) => b.info)?.info;
    if (!init) return firstBase ? inherit(firstBase) : [];
    const src = info.syms.parsed.source;
    const params = new Set<string>();
    for (const p of field(init.node, 'parameters')?.namedChildren ?? []) for (const id of paramNames(p)) params.add(id);
    const scope: StaticScope = { syms: info.syms, resolver: this.resolver, env: new Map(), locals: params };
    const configs = annotatedConfigs(init.node, info.syms, this.resolver);
    const layerDefaults = this.layerDefaults(init, scope);
    const attrs: Attr[] = [];
    const set = (a: Attr) => {
      const defaults = [...(configs.size ? defaultsRead(a.value, configs) : []), ...layerDefaults(a.value)];
      if (defaults.length) a.defaults = defaults;
      if (!a.guard?.length) {
        for (let i = attrs.length - 1; i >= 0; i--) if (attrs[i].name === a.name && !attrs[i].guard?.length) attrs.splice(i, 1);
      }
      attrs.push(a);
    };
    const loops: { v: string; iter: Expr }[] = [];
    const lists = new LocalLists((n) => spanOf(src, n, src.path));
    // `self.loss_fct.reduction = "sum"` after `self.loss_fct = nn.CrossEntropyLoss()`: read as the
    // constructor's keyword (torch's modules keep their arguments under those names and read them
    // when called); under an `if`, as another way of building it. Set on a local that later
    // becomes the attribute (`sm.dim = 1; self.sm = sm`), it is that local's keyword; set on
    // anything else (a loop over submodules), every submodule is built in a way not known.
    const settingChanged = (obj: SyntaxNode, key: string, value: Expr, guard: Expr[], stmt: SyntaxNode) => {
      const withKw = (e: Expr): Expr => (e.k === 'call' && key !== '?' ? { ...e, kw: [...e.kw.filter(([k]) => k !== key), [key, value]] } : { k: 'name', path: '?' });
      const own = /^self\.([A-Za-z_]\w*)$/.exec(obj.text)?.[1];
      if (own) {
        const defs = attrs.filter((a) => a.name === own);
        if (guard.length) {
          const last = defs[defs.length - 1];
          if (last) attrs.push({ ...last, value: withKw(last.value), span: spanOf(src, stmt, src.path), guard: [...(last.guard ?? []), ...guard] });
        } else for (const a of defs) a.value = withKw(a.value);
        return;
      }
      const local = obj.type === 'identifier' ? scope.env.get(obj.text) : undefined;
      if (local && !guard.length && !loops.length) { scope.env.set(obj.text, withKw(local)); return; }
      const unknown = { k: 'name', path: '?' } as Expr;
      if (local) scope.env.set(obj.text, { k: 'call', callee: 'or', args: [local, unknown], kw: [] });
      for (const name of new Set(attrs.filter((a) => a.value.k === 'call').map((a) => a.name))) {
        const last = attrs.filter((a) => a.name === name).pop()!;
        attrs.push({ ...last, value: unknown, span: spanOf(src, stmt, src.path), guard: [...(last.guard ?? []), UNKNOWN] });
      }
    };
    const walk = (block: SyntaxNode | null, guard: Expr[]) => {
      for (const stmt of block?.namedChildren ?? []) {
        if (stmt.type === 'expression_statement') {
          const e = stmt.namedChildren[0];
          if (!e) continue;
          const grown = lists.mutated(e, stmt, scope);
          if (grown) scope.env.set(grown.name, grown.value);
          else if (e.type === 'assignment') {
            const left = field(e, 'left');
            let right = field(e, 'right');
            while (right?.type === 'assignment') right = field(right, 'right');
            if (!left || !right) continue;
            const setting = settingAssigned(left);
            if (left.type === 'attribute' && field(left, 'object')?.text === 'self') {
              const { value, built: fromFactory } = this.throughFactory(staticExpr(right, scope));
              const built = fromFactory ?? lists.builtFrom(right);
              if (built?.file === src.path) delete built.file;
              set({ name: field(left, 'attribute')!.text, value, span: spanOf(src, stmt, src.path), ...(guard.length ? { guard: [...guard] } : {}), ...(built ? { built } : {}) });
            } else if (setting) {
              settingChanged(setting[0], setting[1], staticExpr(right, scope), guard, stmt);
            } else if (left.type === 'identifier') {
              scope.env.set(left.text, this.rebinding(left.text, staticExpr(right, scope), guard, params));
              lists.assigned(left.text, scope.env.get(left.text)!, stmt);
            } else {
              for (const id of identifiersOf(left)) { scope.env.delete(id); scope.locals.add(id); }
            }
          } else if (e.type === 'call') {
            const fnText = field(e, 'function')?.text ?? '';
            const callArgs = (field(e, 'arguments')?.namedChildren ?? []).filter((a) => a.type !== 'comment');
            const helper = /^self\.([A-Za-z_]\w*)$/.exec(fnText)?.[1];
            if (fnText === 'setattr' && callArgs.length === 3) {
              // `setattr(self.sm, "dim", 1)`: as `self.sm.dim = 1`
              const key = staticExpr(callArgs[1], scope);
              if (key.k === 'const' && typeof key.v === 'string' && !NOT_SETTINGS.has(key.v)) settingChanged(callArgs[0], key.v, staticExpr(callArgs[2], scope), guard, stmt);
              else if (key.k !== 'const') settingChanged(callArgs[0], '?', { k: 'name', path: '?' }, guard, stmt);
            } else if (helper && helper !== '__init__' && info.def.methods.has(helper)) {
              // a method of the class __init__ calls may change a submodule's settings: each one
              // it changes is built in a way not known statically
              for (const [obj, key] of settingsChangedIn(info.def.methods.get(helper)!.node)) settingChanged(obj, key, { k: 'name', path: '?' }, [...guard, UNKNOWN], stmt);
              this.initCall(info, e, stmt, scope, attrs, set, guard, loops);
            } else {
              this.initCall(info, e, stmt, scope, attrs, set, guard, loops);
            }
          }
        } else if (stmt.type === 'if_statement') {
          const cond = staticExpr(field(stmt, 'condition')!, scope);
          walk(field(stmt, 'consequence'), [...guard, cond]);
          let negs: Expr[] = [not(cond)];
          for (const alt of stmt.namedChildren.filter((c) => c.type === 'elif_clause' || c.type === 'else_clause')) {
            if (alt.type === 'elif_clause') {
              const c2 = staticExpr(field(alt, 'condition')!, scope);
              walk(field(alt, 'consequence'), [...guard, ...negs, c2]);
              negs = [...negs, not(c2)];
            } else walk(field(alt, 'body'), [...guard, ...negs]);
          }
        } else if (stmt.type === 'for_statement') {
          const left = field(stmt, 'left')!;
          const iter = staticExpr(field(stmt, 'right')!, scope);
          for (const id of identifiersOf(left)) { scope.env.delete(id); scope.locals.add(id); }
          loops.push({ v: left.text, iter });
          walk(field(stmt, 'body'), guard);
          loops.pop();
        } else if (stmt.type === 'with_statement' || stmt.type === 'try_statement') {
          for (const c of stmt.namedChildren) {
            if (c.type === 'block') walk(c, guard);
            else if (['else_clause', 'finally_clause', 'except_clause'].includes(c.type)) walk(c.namedChildren.find((x) => x.type === 'block') ?? null, guard);
          }
        }
      }
    };
    walk(field(init.node, 'body'), []);
    return attrs;
  }

  /** `if norm_layer is None: norm_layer = nn.BatchNorm2d` chooses a default for a parameter: it
   *  reads as `norm_layer = norm_layer or nn.BatchNorm2d`, not as the class unconditionally. */
  private rebinding(name: string, value: Expr, guard: Expr[], params: Set<string>): Expr {
    const last = guard[guard.length - 1];
    const isNone = last?.k === 'call' && last.callee === 'is' && last.args[0]?.k === 'name' && last.args[0].path === name
      && last.args[1]?.k === 'const' && last.args[1].v === null;
    return isNone && params.has(name) ? { k: 'call', callee: 'or', args: [{ k: 'name', path: name }, value], kw: [] } : value;
  }

  /** For an __init__: the layer classes an attribute's value builds through names chosen by
   *  parameters (`norm_layer(c)` → `[["norm_layer", torch.nn.BatchNorm2d]]`), read from the
   *  parameters' defaults and the rebindings seen so far. */
  private layerDefaults(init: FuncDef, scope: StaticScope): (value: Expr) => [string, Expr][] {
    const src = this.resolver.symbolsOf(init.module)!;
    const defaults = new Map<string, Expr>();
    for (const p of field(init.node, 'parameters')?.namedChildren ?? []) {
      const [name] = paramNames(p);
      const d = field(p, 'value');
      if (name && d) defaults.set(name, staticExpr(d, { syms: src, resolver: this.resolver, env: new Map(), locals: new Set() }));
    }
    const isClass = (q: string) => isClassName(this.resolver, q);
    const classOf = (name: string): string | undefined => {
      const start = scope.env.get(name) ?? { k: 'name', path: name };
      // the parameter's own default, once its rebinding has been followed
      const paramDefault = (n: string) => (n === name || !scope.env.has(n) ? defaults.get(n) : undefined);
      return defaultClassOf(start, paramDefault, isClass, 0, (callee) => this.passesThrough(callee), this.factories.chooser);
    };
    return (value) => {
      const out = new Map<string, Expr>();
      // `self._norm_layer = norm_layer` (or `norm_layer or nn.BatchNorm2d`): the attribute holds
      // the class itself
      const held = heldParam(value);
      if (held && scope.locals.has(held)) {
        const cls = defaultClassOf(value, (n) => defaults.get(n), isClass, 0, (callee) => this.passesThrough(callee), this.factories.chooser);
        if (cls) out.set(held, { k: 'name', path: cls });
      }
      const visit = (e: Expr): void => {
        if (e.k === 'call') {
          if (!e.callee.includes('.') && (scope.locals.has(e.callee) || scope.env.has(e.callee)) && !out.has(e.callee)) {
            const cls = classOf(e.callee);
            if (cls) out.set(e.callee, { k: 'name', path: cls });
          }
          e.args.forEach(visit);
          e.kw.forEach(([, v]) => visit(v));
        } else if (e.k === 'list' || e.k === 'tuple') e.items.forEach(visit);
        else if (e.k === 'star') visit(e.e);
        else if (e.k === 'comp') visit(e.elt);
        else if (e.k === 'dict') e.items.forEach(([, v]) => visit(v));
      };
      visit(value);
      // `self.conv = create_conv2d(...)`, or a Sequential's element a factory builds: the layer
      // a project factory builds, by its own choice
      for (const [callee, built] of this.factories.buildsIn(value)) if (!out.has(callee)) out.set(callee, { k: 'name', path: built });
      return [...out];
    };
  }

  /** A project function that hands back the layer it is given (`get_norm_layer(norm_layer)`
   *  ends in `return norm_layer`): the default class is taken to pass through it, which the
   *  rewrite's run-time check of the class built makes safe. */
  private passesThrough(callee: string): boolean {
    const r = this.resolver.resolveQual(callee);
    if (r.k !== 'function' || r.def.owner) return false;
    const first = (field(r.def.node, 'parameters')?.namedChildren ?? []).map((p) => paramNames(p)[0]).find(Boolean);
    if (!first) return false;
    let found = false;
    const walk = (n: SyntaxNode) => {
      if (found) return;
      if (n.type === 'return_statement') { found = n.namedChildren[0]?.type === 'identifier' && n.namedChildren[0].text === first; return; }
      if (n.type !== 'function_definition' && n.type !== 'lambda' && n.type !== 'class_definition') n.namedChildren.forEach(walk);
    };
    field(r.def.node, 'body')?.namedChildren.forEach(walk);
    return found;
  }

  private initCall(info: ClassInfo, call: SyntaxNode, stmt: SyntaxNode, scope: StaticScope, attrs: Attr[],
    set: (a: Attr) => void, guard: Expr[], loops: { v: string; iter: Expr }[]): void {
    const src = info.syms.parsed.source;
    const fn = field(call, 'function')!;
    const args = (field(call, 'arguments')?.namedChildren ?? []).filter((a) => a.type !== 'comment');
    const span = spanOf(src, stmt, src.path);
    const g = guard.length ? { guard: [...guard] } : {};
    // super().__init__(...) and Base.__init__(self, ...): the base's attributes come first.
    if (fn.type === 'attribute' && field(fn, 'attribute')?.text === '__init__') {
      const obj = field(fn, 'object')!;
      let base: ClassInfo | undefined;
      if (obj.type === 'call' && field(obj, 'function')?.text === 'super') base = info.bases.find((b) => b.info)?.info;
      else {
        const d = dottedOf(obj);
        const r = d ? this.resolver.resolveQual(qualify(scope, d)) : undefined;
        if (r?.k === 'class') base = this.info(r.def);
      }
      if (base && !base.busy) for (const a of inherit(base)) set(a);
      return;
    }
    const d = dottedOf(fn);
    if (!d?.startsWith('self.')) return;
    const parts = d.split('.');
    if (parts.length === 2 && ['register_buffer', 'register_parameter', 'add_module'].includes(parts[1]) && args.length >= 2) {
      const nameArg = staticExpr(args[0], scope);
      if (nameArg.k === 'const' && typeof nameArg.v === 'string') {
        const value = staticExpr(args[1], scope);
        set({ name: nameArg.v, value: parts[1] === 'register_buffer' ? { k: 'call', callee: 'buffer', args: [value], kw: [] } : value, span, ...g });
      }
      return;
    }
    if (parts.length === 3 && (parts[2] === 'append' || parts[2] === 'extend') && args.length === 1) {
      const target = [...attrs].reverse().find((a) => a.name === parts[1]);
      if (!target || target.value.k !== 'call') return;
      let item = staticExpr(args[0], scope);
      for (let i = loops.length - 1; i >= 0; i--) item = { k: 'comp', elt: item, v: loops[i].v, iter: loops[i].iter };
      const list = target.value.args[0];
      const items = list?.k === 'list' ? [...list.items] : [];
      if (parts[2] === 'append') items.push(item);
      else items.push({ k: 'star', e: item, double: false });
      target.value = { ...target.value, args: [{ k: 'list', items }, ...target.value.args.slice(1)] };
    }
  }
}

/** Attributes that hold parameters, not settings: tying or replacing them changes nothing a
 *  rewrite reads from the constructor (the kernels read them when called). */
const NOT_SETTINGS = new Set(['weight', 'bias', 'data', 'grad', 'requires_grad', 'running_mean', 'running_var']);

/** A condition nothing can decide: an assignment that may or may not run. */
const UNKNOWN: Expr = { k: 'name', path: '?' };

/** `(X, setting)` where `left`, an assignment's target, is `X.setting` with X not `self` itself
 *  (that would be an attribute of the module, not a setting of a submodule), the setting not a
 *  parameter, and X not a parameter either (`m.weight.data = ...`). */
function settingAssigned(left: SyntaxNode | null): [SyntaxNode, string] | undefined {
  const obj = left?.type === 'attribute' ? field(left, 'object') : null;
  const key = left && field(left, 'attribute')?.text;
  if (!obj || !key || obj.text === 'self' || NOT_SETTINGS.has(key)) return undefined;
  if (obj.type === 'attribute' && NOT_SETTINGS.has(field(obj, 'attribute')?.text ?? '')) return undefined;
  return [obj, key];
}

/** `(object, setting)` for each `X.setting = v` and `setattr(X, "setting", v)` in a method's body
 *  (nested functions included), where X is not `self` itself: what calling it may change. */
function settingsChangedIn(method: SyntaxNode): [SyntaxNode, string][] {
  const out: [SyntaxNode, string][] = [];
  const visit = (n: SyntaxNode) => {
    const set = n.type === 'assignment' ? settingAssigned(field(n, 'left')) : undefined;
    if (set) out.push(set);
    else if (n.type === 'call' && field(n, 'function')?.text === 'setattr') {
      const [obj, key] = (field(n, 'arguments')?.namedChildren ?? []).filter((a) => a.type !== 'comment');
      if (obj && key && !(key.type === 'string' && NOT_SETTINGS.has(key.text.slice(1, -1)))) out.push([obj, key.type === 'string' ? key.text.slice(1, -1) : '?']);
    }
    n.namedChildren.forEach(visit);
  };
  visit(method);
  return out;
}

function inherit(base: ClassInfo): Attr[] {
  return base.attrs.map((a) => ({ ...a, from: a.from ?? base.def.qual }));
}

function not(e: Expr): Expr {
  return { k: 'call', callee: 'not', args: [e], kw: [] };
}

/** Element classes of a ModuleList/Sequential/ModuleDict attribute value, or of one constructor. */
export function elementTypes(value: Expr): string[] {
  const out: string[] = [];
  const visit = (e: Expr) => {
    switch (e.k) {
      case 'call':
        if (/(^|\.)(ModuleList|ModuleDict|ParameterList)$/.test(e.callee) || e.callee === 'list') e.args.forEach(visit);
        else out.push(e.callee);
        break;
      case 'list': case 'tuple': e.items.forEach(visit); break;
      case 'dict': e.items.forEach(([, v]) => visit(v)); break;
      case 'comp': visit(e.elt); break;
      case 'star': visit(e.e); break;
      case 'index': out.push(typeName(e)); break;
      default: break;
    }
  };
  visit(value);
  return [...new Set(out)];
}

/** The class of a module attribute's value, as printed after `:` in the DSL. */
export function typeName(value: Expr): string {
  if (value.k === 'call') return value.callee;
  if (value.k === 'index' && value.base.k === 'name') return `${value.base.path}[${value.index.k === 'name' ? value.index.path : value.index.k === 'const' ? JSON.stringify(value.index.v) : '?'}]`;
  return '?';
}
