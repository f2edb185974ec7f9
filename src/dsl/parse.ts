// Parsing the architecture DSL (grammar/dsl.ohm) back into the IR: parse(print(ir)) equals ir.
import type * as ohm from 'ohm-js';
import { AdoptError } from '../diag.js';
import { grammars } from './grammars.js';
import type { Attr, Expr, FileIR, Method, ModuleIR, Op, OpKind, Param, Phi, Program, Span, Stmt } from './ir.js';

export const INDENT = '\u27EA';
export const DEDENT = '\u27EB';

let grammar: ohm.Grammar | undefined;
let semantics: ohm.Semantics | undefined;

function load(): { g: ohm.Grammar; s: ohm.Semantics } {
  if (!grammar) {
    grammar = grammars().dsl;
    semantics = grammar.createSemantics();
    addSemantics(semantics);
  }
  return { g: grammar, s: semantics! };
}

/** Python-style layout to explicit block markers. Tabs count as 8 columns. */
export function markIndentation(text: string): string {
  const lines = text.split('\n');
  const stack = [0];
  const out: string[] = [];
  for (const line of lines) {
    if (line.trim() === '' || /^\s*\/\//.test(line)) { out.push(line); continue; }
    const width = line.match(/^[ \t]*/)![0].replace(/\t/g, '        ').length;
    let prefix = '';
    if (width > stack[stack.length - 1]) { stack.push(width); prefix = INDENT; }
    else while (width < stack[stack.length - 1]) { stack.pop(); prefix += DEDENT; }
    out.push(prefix + line);
  }
  out.push(DEDENT.repeat(stack.length - 1));
  return out.join('\n');
}

export function parseProgram(text: string, source = '<dsl>'): Program {
  const { g, s } = load();
  const m = g.match(markIndentation(text), 'Program');
  if (m.failed()) {
    const pos = (m as unknown as { getRightmostFailurePosition(): number }).getRightmostFailurePosition();
    const marked = markIndentation(text);
    const before = marked.slice(0, pos);
    const line = before.split('\n').length;
    const col = before.slice(before.lastIndexOf('\n') + 1).replace(/[\u27EA\u27EB]/g, '').length + 1;
    const expected = (m as unknown as { shortMessage?: string }).shortMessage ?? m.message ?? '';
    throw new AdoptError(`${source}:${line}:${col}: error: cannot parse the DSL: ${expected.replace(/^Line \d+, col \d+: /, '')}`, [
      { severity: 'error', code: 'dsl-syntax', file: source, line, col, message: `cannot parse the DSL: ${expected.replace(/^Line \d+, col \d+: /, '')}` },
    ]);
  }
  return s(m).ir() as Program;
}

type N = ohm.Node;

function list(n: N): unknown[] {
  return n.asIteration().children.map((c: N) => c.ir());
}
function opt<T>(n: N): T | undefined {
  return n.children.length ? (n.children[0].ir() as T) : undefined;
}

/** The `ir` operation; also the base of the rule grammar's semantics. */
// check-structure: table (one action per grammar rule)
export function addSemantics(s: ohm.Semantics): void {
  s.addOperation('ir', {
    Program(_h, _v, _r, root, files) {
      return { version: 1, root: root.ir(), files: files.children.map((f: N) => f.ir()) } satisfies Program;
    },
    FileSec(_f, path, _m, module, body) {
      const file: FileIR = { path: path.ir(), module: module.ir(), modules: [], functions: [], diagnostics: [] };
      const items = (opt<unknown[]>(body) ?? []) as { kind: string; value: unknown }[];
      for (const it of items) {
        if (it.kind === 'diag') file.diagnostics.push(it.value as FileIR['diagnostics'][number]);
        else if (it.kind === 'module') file.modules.push(it.value as ModuleIR);
        else file.functions.push(it.value as Method);
      }
      return file;
    },
    FileBody(_i, items, _d) { return items.children.map((c: N) => c.ir()); },
    FileItem(x) {
      const v = x.ir();
      return { kind: x.ctorName === 'Diagnostic' ? 'diag' : x.ctorName === 'ModuleSec' ? 'module' : 'def', value: v };
    },
    Diagnostic(_k, sev, file, _c1, line, _c2, col, code, msg) {
      return { severity: sev.sourceString, file: file.ir(), line: line.ir(), col: col.ir(), code: code.sourceString, message: msg.ir() };
    },
    ModuleSec(_k, q, _o, bases, _c, span, body) {
      const qualname = q.ir() as string;
      const m: ModuleIR = { name: qualname.slice(qualname.lastIndexOf('.') + 1), qualname, bases: list(bases) as string[], span: span.ir(), attrs: [], methods: [], inherited: [] };
      for (const it of (opt<{ kind: string; value: unknown }[]>(body) ?? [])) {
        if (it.kind === 'init') m.attrs.push(...(it.value as Attr[]));
        else if (it.kind === 'inherits') m.inherited.push(it.value as [string, string]);
        else m.methods.push(it.value as Method);
      }
      return m;
    },
    ModuleBody(_i, items, _d) { return items.children.map((c: N) => c.ir()); },
    ModuleItem(x) {
      const name = x.ctorName;
      return { kind: name === 'InitSec' ? 'init' : name === 'Inherits' ? 'inherits' : 'def', value: x.ir() };
    },
    InitSec(_k, _i, attrs, _d) { return attrs.children.map((c: N) => c.ir()); },
    AttrLine(name, _eq, value, guard, from, built, defaults, span) {
      const a: Attr = { name: name.sourceString, value: value.ir(), span: span.ir() };
      const g = opt<Expr[]>(guard);
      if (g) a.guard = g;
      const f = opt<string>(from);
      if (f) a.from = f;
      const b = opt<Span>(built);
      if (b) a.built = b;
      const d = opt<[string, Expr][]>(defaults);
      if (d) a.defaults = d;
      return a;
    },
    Built(_k, s) { return s.ir(); },
    Defaults(_k, pairs) { return list(pairs); },
    DefaultPair(k, _eq, v) { return [k.sourceString, v.ir()]; },
    Guard(_k, exprs) { return list(exprs); },
    From(_k, q) { return q.ir(); },
    Inherits(_k, meth, _f, q) { return [meth.sourceString, q.ir()]; },
    Def(_k, name, _o, params, _c, span, decorated, body) {
      const m: Method = { name: name.sourceString, params: list(params) as Param[], body: body.ir(), span: span.ir() };
      const d = opt<string[]>(decorated);
      if (d) m.decorators = d;
      return m;
    },
    Decorated(_k, names) { return list(names); },
    Param(star, name, def) {
      const p: Param = { name: name.sourceString };
      const d = opt<Expr>(def);
      if (d) p.default = d;
      if (star.children.length) p.star = star.sourceString as '*' | '**';
      return p;
    },
    ParamDefault(_eq, e) { return e.ir(); },
    Block(_i, stmts, _d) { return stmts.children.map((c: N) => c.ir()).filter((x: Stmt | null) => x !== null); },
    Stmt(x) { return x.ir(); },
    Pass(_k) { return null; },
    Phi(ssa, _eq, _k, v, _o, ins, _c) { return { id: ssa.ir(), v: v.ir(), ins: list(ins) as Expr[] } satisfies Phi; },
    OpLine(ssa, _eq, callee, _o, args, _c, type, span, via, called) {
      const c = callee.ir() as { kind: OpKind; callee: string };
      const types = opt<string[]>(type);
      const all = list(args) as { kw?: string; e: Expr }[];
      const op: Op = {
        k: 'op', id: ssa.ir(), kind: c.kind === 'op' && types ? 'module' : c.kind, callee: c.callee,
        args: all.filter((a) => a.kw === undefined).map((a) => a.e),
        kw: all.filter((a) => a.kw !== undefined).map((a) => [a.kw!, a.e]),
        span: span.ir(),
      };
      if (types) op.type = types;
      const v = opt<{ via: string[]; site?: Span }>(via);
      if (v) { op.via = v.via; if (v.site) op.site = v.site; }
      const at = opt<Span>(called);
      if (at) op.called = at;
      return op;
    },
    Callee_call(_k, t) { return { kind: 'call', callee: t.ir() }; },
    Callee_unknown(_q, t) { return { kind: 'unknown', callee: t.ir() }; },
    Callee_plain(t) { return { kind: 'op', callee: t.ir() }; },
    TypeAnn(_c, types) { return list(types); },
    Via(_k, names, site) { const s = opt<Span>(site); return s ? { via: list(names), site: s } : { via: list(names) }; },
    ViaSite(_k, s) { return s.ir(); },
    Called(_k, s) { return s.ir(); },
    IfBlock(_k, cond, span, then, els, phis) {
      return { k: 'if', cond: cond.ir(), then: then.ir(), else: opt<Stmt[]>(els) ?? [], phis: phis.children.map((p: N) => p.ir()), span: span.ir() } satisfies Stmt;
    },
    ElseBlock(_k, b) { return b.ir(); },
    ForBlock(head, iter, type, span, _i, phis, body, _d) {
      const s: Stmt = { k: 'for', v: head.ir(), iter: iter.ir(), phis: phis.children.map((p: N) => p.ir()), body: body.children.map((c: N) => c.ir()).filter((x: Stmt | null) => x !== null), span: span.ir() };
      const t = opt<string[]>(type);
      if (t) s.type = t;
      return s;
    },
    ForHead_for(_k, v, _in) { return v.ir(); },
    ForHead_while(_k) { return ''; },
    ReturnLine(_k, value, span) { return { k: 'return', value: opt<Expr>(value) ?? null, span: span.ir() } satisfies Stmt; },
    NoteLine(_k, text, span) { return { k: 'note', text: text.ir(), span: span.ir() } satisfies Stmt; },
    Arg_kw(name, _eq, e) { return { kw: name.sourceString, e: e.ir() }; },
    Arg_pos(e) { return { e: e.ir() }; },
    Expr(e) { return e.ir(); },
    Primary(x) { return x.ctorName === 'ssa' ? ({ k: 'ssa', id: x.ir() } satisfies Expr) : x.ir(); },
    Postfix_index(base, _o, index, _c) { return { k: 'index', base: base.ir(), index: index.ir() } satisfies Expr; },
    Primary_dstar(_s, e) { return { k: 'star', e: e.ir(), double: true } satisfies Expr; },
    Primary_star(_s, e) { return { k: 'star', e: e.ir(), double: false } satisfies Expr; },
    Primary_empty(_o, _c) { return { k: 'tuple', items: [] } satisfies Expr; },
    Primary_single(_o, e, _comma, _c) { return { k: 'tuple', items: [e.ir()] } satisfies Expr; },
    Primary_tuple(_o, first, _commas, rest, _c) { return { k: 'tuple', items: [first.ir(), ...rest.children.map((c: N) => c.ir())] } satisfies Expr; },
    Primary_comp(_o, elt, _f, v, _in, iter, _c) { return { k: 'comp', elt: elt.ir(), v: v.ir(), iter: iter.ir() } satisfies Expr; },
    Primary_list(_o, items, _c) { return { k: 'list', items: list(items) as unknown as Expr[] } satisfies Expr; },
    Primary_dict(_o, pairs, _c) { return { k: 'dict', items: list(pairs) as unknown as [Expr, Expr][] } satisfies Expr; },
    Pair(k, _c, v) { return [k.ir(), v.ir()]; },
    Primary_slice(_o, lo, _c, hi, step, _e) {
      return { k: 'slice', lo: opt<Expr>(lo) ?? null, hi: opt<Expr>(hi) ?? null, step: opt<Expr>(step) ?? null } satisfies Expr;
    },
    SliceStep(_c, e) { return e.ir(); },
    Primary_call(callee, _o, args, _c) {
      const all = list(args) as { kw?: string; e: Expr }[];
      return {
        k: 'call', callee: callee.ir(),
        args: all.filter((a) => a.kw === undefined).map((a) => a.e),
        kw: all.filter((a) => a.kw !== undefined).map((a) => [a.kw!, a.e] as [string, Expr]),
      } satisfies Expr;
    },
    const(x) {
      const t = x.sourceString;
      if (t === 'True') return { k: 'const', v: true };
      if (t === 'False') return { k: 'const', v: false };
      if (t === 'None') return { k: 'const', v: null };
      return x.ctorName === 'string' ? { k: 'const', v: x.ir() } : x.ir();
    },
    number(_m, _a, _b) {
      const raw = this.sourceString;
      return { k: 'const', v: Number(raw.replace(/_/g, '')), raw } satisfies Expr;
    },
    string(_o, _chars, _c) { return JSON.parse(this.sourceString); },
    opaque(_o, _chars, _c) { return { k: 'opaque', text: JSON.parse(`"${this.sourceString.slice(1, -1)}"`) } satisfies Expr; },
    nameTok_quoted(_d, s) { return { k: 'name', path: s.ir() } satisfies Expr; },
    nameTok_ellipsis(_e) { return { k: 'name', path: '...' } satisfies Expr; },
    nameTok_plain(d) { return { k: 'name', path: d.sourceString } satisfies Expr; },
    ssa(_p, _d) { return Number(this.sourceString.slice(1)); },
    int(_d) { return Number(this.sourceString); },
    qname(x) { return x.ctorName === 'string' ? x.ir() : x.sourceString; },
    calleeTok(x) { return x.ctorName === 'string' ? x.ir() : x.sourceString; },
    varTok(x) { return x.ctorName === 'string' ? x.ir() : x.sourceString; },
    span(_at, file, _colon, l1, _c1, c1, _dash, l2, _c2, c2, _hash, s, _dash2, e) {
      const span: Span = { start: s.ir(), end: e.ir(), from: { line: l1.ir(), col: c1.ir() }, to: { line: l2.ir(), col: c2.ir() } };
      const f = opt<string>(file);
      if (f !== undefined) span.file = f;
      return span;
    },
    _iter(...children) { return children.map((c) => c.ir()); },
  });
}
