// Printing the architecture DSL. The text is exactly what grammar/dsl.ohm parses back
// (parse(print(ir)) equals ir), so every field of the IR appears in it.
import type { Diagnostic } from '../diag.js';
import type { Attr, Expr, FileIR, Method, ModuleIR, Op, Param, Phi, Program, Span, Stmt } from './ir.js';

export const DSL_HEADER = 'adopt-dsl 1';

/** JSON string with everything outside printable ASCII escaped (keeps the layout markers unique). */
export function q(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

const PLAIN_NAME = /^(\.\.\.|[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)$/;
const PLAIN_TOKEN = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/** The IR as JSON (`explain --json`), on one line: indented, the IR of the 199 HF-199 files is
 *  2.6 times the size (180 MB against 70 MB) and takes half as long again to write. It comes in
 *  pieces, one per file, so that a writer never holds the whole text as one string (stringifying
 *  and encoding it whole costs a fifth more); JSON.stringify is compositional, so the pieces join
 *  to exactly `JSON.stringify(p)` and a newline. */
export function* programJsonChunks(p: Program): Generator<string> {
  let sep = '{';
  for (const [key, value] of Object.entries(p)) {
    if (key === 'files') {
      yield `${sep}${JSON.stringify(key)}:[`;
      // the comma on its own: joined to a file's text, it makes a string that writing copies whole
      for (const [i, f] of p.files.entries()) {
        if (i) yield ',';
        yield JSON.stringify(f);
      }
      yield ']';
    } else {
      const text = JSON.stringify(value);
      if (text === undefined) continue;
      yield `${sep}${JSON.stringify(key)}:${text}`;
    }
    sep = ',';
  }
  yield sep === '{' ? '{}\n' : '}\n';
}

export function printProgram(p: Program): string {
  const out: string[] = [`${DSL_HEADER} root ${q(p.root)}`];
  for (const f of p.files) printFile(f, out);
  return out.join('\n') + '\n';
}

export function printFile(f: FileIR, out: string[] = []): string[] {
  out.push(`file ${q(f.path)} module ${name(f.module)}`);
  for (const d of f.diagnostics) out.push(`  ${diagnostic(d)}`);
  for (const m of f.modules) printModule(m, out);
  for (const fn of f.functions) printMethod(fn, out, '  ');
  return out;
}

function diagnostic(d: Diagnostic): string {
  return `diagnostic ${d.severity} ${q(d.file)}:${d.line}:${d.col} ${d.code} ${q(d.message)}`;
}

function printModule(m: ModuleIR, out: string[]): void {
  out.push(`  module ${name(m.qualname)}(${m.bases.map(name).join(', ')}) ${span(m.span)}`);
  if (m.attrs.length) {
    out.push('    init');
    for (const a of m.attrs) out.push(`      ${attr(a)}`);
  }
  for (const [meth, from] of m.inherited) out.push(`    inherits ${meth} from ${name(from)}`);
  for (const fn of m.methods) printMethod(fn, out, '    ');
}

function attr(a: Attr): string {
  let s = `${a.name} = ${expr(a.value)}`;
  if (a.guard?.length) s += ` if ${a.guard.map(expr).join(', ')}`;
  if (a.from) s += ` from ${name(a.from)}`;
  if (a.built) s += ` built ${span(a.built)}`;
  if (a.defaults?.length) s += ` defaults ${a.defaults.map(([k, v]) => `${k}=${expr(v)}`).join(', ')}`;
  return `${s} ${span(a.span)}`;
}

function printMethod(fn: Method, out: string[], indent: string): void {
  out.push(`${indent}def ${fn.name}(${fn.params.map(param).join(', ')}) ${span(fn.span)}${fn.decorators ? ` decorated ${fn.decorators.map(calleeTok).join(', ')}` : ''}`);
  block(fn.body, out, `${indent}  `);
}

function param(p: Param): string {
  return `${p.star ?? ''}${p.name}${p.default ? `=${expr(p.default)}` : ''}`;
}

function block(stmts: Stmt[], out: string[], indent: string): void {
  if (stmts.length === 0) out.push(`${indent}pass`);
  for (const s of stmts) stmt(s, out, indent);
}

function stmt(s: Stmt, out: string[], indent: string): void {
  switch (s.k) {
    case 'op': out.push(indent + op(s)); return;
    case 'return': out.push(`${indent}return${s.value ? ` ${expr(s.value)}` : ''} ${span(s.span)}`); return;
    case 'note': out.push(`${indent}note ${q(s.text)} ${span(s.span)}`); return;
    case 'if':
      out.push(`${indent}if ${expr(s.cond)} ${span(s.span)}`);
      block(s.then, out, `${indent}  `);
      if (s.else.length) {
        out.push(`${indent}else`);
        block(s.else, out, `${indent}  `);
      }
      for (const p of s.phis) out.push(indent + phi(p));
      return;
    case 'for':
      out.push(`${indent}${s.v ? `for ${s.v.includes(' ') || !PLAIN_TOKEN.test(s.v) ? q(s.v) : s.v} in` : 'while'} ${expr(s.iter)}${s.type ? ` : ${s.type.map(typeTok).join(' | ')}` : ''} ${span(s.span)}`);
      for (const p of s.phis) out.push(`${indent}  ${phi(p)}`);
      block(s.body, out, `${indent}  `);
      return;
  }
}

function phi(p: Phi): string {
  return `%${p.id} = phi ${PLAIN_TOKEN.test(p.v) ? p.v : q(p.v)}(${p.ins.map(expr).join(', ')})`;
}

export function op(o: Op): string {
  const args = [...o.args.map(expr), ...o.kw.map(([k, v]) => `${k}=${expr(v)}`)].join(', ');
  let callee: string;
  switch (o.kind) {
    case 'op': callee = o.callee; break;
    case 'module': callee = calleeTok(o.callee); break;
    case 'call': callee = `call ${calleeTok(o.callee)}`; break;
    case 'unknown': callee = `?${calleeTok(o.callee)}`; break;
  }
  let s = `%${o.id} = ${callee}(${args})`;
  if (o.type) s += ` : ${o.type.map(typeTok).join(' | ')}`;
  s += ` ${span(o.span)}`;
  if (o.via) s += ` via ${o.via.map(calleeTok).join(' > ')}`;
  if (o.site) s += ` at ${span(o.site)}`;
  if (o.called) s += ` called ${span(o.called)}`;
  return s;
}

function calleeTok(c: string): string {
  return PLAIN_TOKEN.test(c) ? c : q(c);
}

function typeTok(t: string): string {
  return PLAIN_TOKEN.test(t) ? t : q(t);
}

function name(n: string): string {
  return PLAIN_TOKEN.test(n) ? n : q(n);
}

export function span(s: Span): string {
  return `@${s.file !== undefined ? `${q(s.file)}:` : ''}${s.from.line}:${s.from.col}-${s.to.line}:${s.to.col}#${s.start}-${s.end}`;
}

export function expr(e: Expr): string {
  switch (e.k) {
    case 'ssa': return `%${e.id}`;
    case 'name': return PLAIN_NAME.test(e.path) ? e.path : `$${q(e.path)}`;
    case 'const':
      if (e.v === null) return 'None';
      if (e.v === true) return 'True';
      if (e.v === false) return 'False';
      if (typeof e.v === 'string') return q(e.v);
      return e.raw !== undefined ? `${e.raw}` : numText(e.v);
    case 'tuple': return e.items.length === 1 ? `(${expr(e.items[0])},)` : `(${e.items.map(expr).join(', ')})`;
    case 'list': return `[${e.items.map(expr).join(', ')}]`;
    case 'dict': return `{${e.items.map(([k, v]) => `${expr(k)}: ${expr(v)}`).join(', ')}}`;
    case 'slice': return `<${e.lo ? expr(e.lo) : ''}:${e.hi ? expr(e.hi) : ''}${e.step ? `:${expr(e.step)}` : ''}>`;
    case 'star': return `${e.double ? '**' : '*'}${expr(e.e)}`;
    case 'call': return `${calleeTok(e.callee)}(${[...e.args.map(expr), ...e.kw.map(([k, v]) => `${k}=${expr(v)}`)].join(', ')})`;
    case 'index': return `${expr(e.base)}[${expr(e.index)}]`;
    case 'comp': return `[${expr(e.elt)} for ${PLAIN_TOKEN.test(e.v) ? e.v : q(e.v)} in ${expr(e.iter)}]`;
    case 'opaque': return `\`${q(e.text).slice(1, -1).replace(/`/g, '\\u0060')}\``;
  }
}

function numText(v: number): string {
  if (Number.isNaN(v)) return 'nan';
  if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
  return String(v);
}
