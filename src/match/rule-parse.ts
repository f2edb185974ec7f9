// Parsing rule files (grammar/rules.ohm) into plain data. Loading a rule runs no code from it;
// a file that does not parse is reported at rule-file:line:col in the rule writer's words.
import { readFileSync, statSync } from 'node:fs';
import * as ohm from 'ohm-js';
import type { Const } from '../dsl/ir.js';
import { addSemantics as addDslSemantics, markIndentation } from '../dsl/parse.js';
import { grammars } from '../dsl/grammars.js';
import { fail, type Constraint, type Example, type Kernel, type PatArg, type PatOp, type Rewrite, type Rule, type Scope } from './rule-ir.js';
import { validateRule } from './rule-check.js';
import { cachedParse, storeParse, type ParsedRule } from './rule-cache.js';
import { describeSyntaxError, type SyntaxFailure } from './rule-syntax.js';

let grammar: ohm.Grammar | undefined;
let semantics: ohm.Semantics | undefined;

function load(): { g: ohm.Grammar; s: ohm.Semantics } {
  if (!grammar) {
    const { dsl, rules } = grammars();
    grammar = rules;
    const base = dsl.createSemantics();
    addDslSemantics(base);
    semantics = grammar.extendSemantics(base);
    addRuleSemantics(semantics);
  }
  return { g: grammar, s: semantics! };
}

/** 1-based line and column in the user's text of an index into the marked text. */
function positionOf(marked: string, index: number): { line: number; col: number } {
  const before = marked.slice(0, index);
  const line = before.split('\n').length;
  const col = before.slice(before.lastIndexOf('\n') + 1).replace(/[\u27EA\u27EB]/g, '').length + 1;
  return { line, col };
}

interface FailedMatch { getRightmostFailurePosition(): number; getRightmostFailures(): { type: string; getText(): string }[] }

// What a rule file may be, so that a file far past anything a rule needs is refused at once with
// the reason, instead of the parser taking time superlinear in a long line, running out of memory
// on a large file, or out of stack on deep nesting. The library's largest file is 5 KB, its
// longest line under 500 characters, and its deepest nesting 3.
/** The largest rule file read, in bytes. */
export const MAX_RULE_FILE_BYTES = 256 * 1024;
/** The longest line of a rule file, in characters. */
export const MAX_RULE_LINE_CHARS = 4000;
/** The deepest nesting of brackets in a rule file. */
export const MAX_RULE_NESTING = 64;

const kib = (n: number) => `${Math.ceil(n / 1024)} KiB`;

/** Refuses, at its place, a text past what a rule file may hold (the limits above), and one that
 *  holds no rule. */
function checkLimits(text: string, file: string): void {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_RULE_FILE_BYTES) fail(file, 1, 1, tooLarge(bytes));
  let line = 1;
  for (let start = 0; start <= text.length; line++) {
    // a rule's statements are lines: brackets nest within one (an unclosed one in a comment or a
    // broken line never carries over to the next)
    let depth = 0;
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    if (end - start > MAX_RULE_LINE_CHARS) {
      fail(file, line, MAX_RULE_LINE_CHARS + 1, `line ${line} is ${end - start} characters long, over the ${MAX_RULE_LINE_CHARS} a rule file's line may have`);
    }
    // brackets outside strings and comments (the parser's recursion follows them)
    if (!/^\s*\/\//.test(text.slice(start, Math.min(end, start + 200)))) {
      let quote = false;
      for (let i = start; i < end; i++) {
        const c = text[i];
        if (quote) { if (c === '\\') i++; else if (c === '"') quote = false; continue; }
        if (c === '"') quote = true;
        else if (c === '/' && text[i + 1] === '/') break;  // a trailing comment
        else if (c === '(' || c === '[' || c === '{') {
          if (++depth > MAX_RULE_NESTING) fail(file, line, i - start + 1, `brackets nested more than ${MAX_RULE_NESTING} deep: a rule file nests at most ${MAX_RULE_NESTING}`);
        } else if ((c === ')' || c === ']' || c === '}') && depth > 0) depth--;
      }
    }
    start = end + 1;
  }
  if (!text.split('\n').some((l) => l.trim() !== '' && !/^\s*\/\//.test(l))) {
    fail(file, 1, 1, `the file holds no rule: a rule file holds one or more 'rule NAME' blocks (docs/rule-language.md)`);
  }
}

export function parseRules(text: string, file: string): Rule[] {
  // a UTF-8 byte-order mark is no part of the text
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  checkLimits(text, file);
  // a tab has no width the layout could agree on with every editor
  const tab = /^([ ]*)\t/m.exec(text);
  if (tab) {
    const { line } = positionOf(text, tab.index);
    fail(file, line, tab[1].length + 1, 'a tab in the indentation: rule files are indented with spaces, not tabs');
  }
  const parsed = cachedParse(text) ?? parseText(text, file);
  const rules = parsed.map((r) => ({ ...r, file }));
  for (const r of rules) validateRule(r);
  return rules;
}

/** The rules of a text as the grammar parses them (no file attached, not validated), stored for
 *  the next run. A text that does not parse is reported at file:line:col. */
function parseText(text: string, file: string): ParsedRule[] {
  const { g, s } = load();
  const marked = markIndentation(text);
  const m = g.match(marked, 'RuleFile');
  if (m.failed()) {
    const failed = m as unknown as FailedMatch;
    const failures: SyntaxFailure[] = failed.getRightmostFailures().map((f) => ({ type: f.type, text: f.getText() }));
    const { index, message } = describeSyntaxError(marked, failed.getRightmostFailurePosition(), failures);
    const { line, col } = withinText(text, positionOf(marked, index));
    fail(file, line, col, `cannot parse the rule: ${message}`);
  }
  const rules = s(m).rule() as ParsedRule[];
  storeParse(text, rules);
  return rules;
}

/** A place past the end of the text (the parser reached the end of the file, after the layout
 *  it adds there) is reported at the end of the text's last line that holds anything. */
function withinText(text: string, at: { line: number; col: number }): { line: number; col: number } {
  const lines = text.split('\n');
  if (at.line <= lines.length && !(at.line === lines.length && lines[at.line - 1] === '' && at.line > 1)) return at;
  let last = Math.min(at.line, lines.length) - 1;
  while (last > 0 && lines[last].trim() === '') last--;
  return { line: last + 1, col: lines[last].replace(/\r$/, '').length + 1 };
}

export function loadRuleFile(path: string): Rule[] {
  let bytes: Buffer;
  let size: number;
  try {
    // the size first: a file far too large is not read at all
    size = statSync(path).size;
    bytes = size > MAX_RULE_FILE_BYTES ? Buffer.alloc(0) : readFileSync(path);
  } catch (e) {
    fail(path, 1, 1, `cannot read rule file: ${(e as Error).message}`);
  }
  if (size > MAX_RULE_FILE_BYTES) fail(path, 1, 1, tooLarge(size));
  return parseRules(decodeRuleFile(bytes, path), path);
}

function tooLarge(size: number): string {
  return `the rule file is ${kib(size)}, over the ${kib(MAX_RULE_FILE_BYTES)} a rule file may hold: split it into several files (--rules takes a directory)`;
}

/** A rule file's text: UTF-8, a byte-order mark dropped. Any other encoding is refused at the
 *  first byte that is not UTF-8, saying so (a parse error there would only confuse). */
export function decodeRuleFile(bytes: Buffer, path: string): string {
  const notUtf8 = 'rule files are UTF-8 text: save it as UTF-8';
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
    fail(path, 1, 1, `the file is not UTF-8: it begins with a UTF-16 byte-order mark; ${notUtf8}`);
  }
  const bad = firstInvalidUtf8(bytes);
  if (bad >= 0) {
    const { line, col } = bytePlace(bytes, bad);
    fail(path, line, col, `the file is not UTF-8: byte 0x${bytes[bad].toString(16).toUpperCase().padStart(2, '0')} at line ${line}, column ${col} is not valid UTF-8 (Latin-1 or another encoding?); ${notUtf8}`);
  }
  const nul = bytes.indexOf(0);
  if (nul >= 0) {
    const { line, col } = bytePlace(bytes, nul);
    fail(path, line, col, `the file is not UTF-8 text: it holds a NUL byte at line ${line}, column ${col} (UTF-16?); ${notUtf8}`);
  }
  return bytes.toString('utf8').replace(/^\uFEFF/, '');
}

/** The index of the first byte of `bytes` that does not belong to well-formed UTF-8, or -1. */
function firstInvalidUtf8(b: Buffer): number {
  for (let i = 0; i < b.length;) {
    const c = b[i];
    if (c < 0x80) { i++; continue; }
    let n: number, min: number;
    if (c >= 0xc2 && c <= 0xdf) { n = 1; min = 0x80; } else if (c >= 0xe0 && c <= 0xef) { n = 2; min = 0x800; } else if (c >= 0xf0 && c <= 0xf4) { n = 3; min = 0x10000; } else return i;
    let cp = c & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const x = b[i + k];
      if (x === undefined || (x & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (x & 0x3f);
    }
    // overlong forms, surrogates and code points past U+10FFFF are not UTF-8
    if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return i;
    i += n + 1;
  }
  return -1;
}

/** 1-based line and column (in characters of the valid text before it) of a byte. */
function bytePlace(b: Buffer, index: number): { line: number; col: number } {
  const before = b.subarray(0, index);
  const lineStart = before.lastIndexOf(0x0a) + 1;
  let line = 1;
  for (let i = 0; i < lineStart; i++) if (b[i] === 0x0a) line++;
  return { line, col: b.subarray(lineStart, index).toString('utf8').length + 1 };
}

type N = ohm.Node;

export function addRuleSemantics(s: ohm.Semantics): void {
  const lineCol = (n: N) => {
    const src = n.source as unknown as { sourceString: string; startIdx: number };
    return positionOf(src.sourceString, src.startIdx);
  };
  s.addOperation('rule', {
    RuleFile(decls) { return decls.children.map((d: N) => d.rule()); },
    RuleDecl(_k, name, _i, items, _d) {
      const r: Omit<Rule, 'file'> = {
        name: name.sourceString, line: lineCol(this as unknown as N).line, title: '', priority: 50,
        pattern: [], where: [], kernels: [], tune: [], examples: [],
      };
      for (const it of items.children) {
        const v = it.rule() as { kind: string; value: unknown };
        switch (v.kind) {
          case 'title': r.title = v.value as string; break;
          case 'priority': r.priority = v.value as number; break;
          case 'bench': r.bench = v.value as string; break;
          case 'detect': r.detect = v.value as string; break;
          case 'scope': r.scope = [...new Set([...(r.scope ?? []), ...(v.value as Scope[])])]; break;
          case 'match': r.pattern.push(...(v.value as PatOp[])); break;
          case 'where': r.where.push(...(v.value as Constraint[])); break;
          case 'rewrite': r.rewrite = v.value as Rewrite; break;
          case 'kernel': r.kernels.push(v.value as Kernel); break;
          case 'tune': r.tune.push(v.value as [string, Const[]]); break;
          case 'example': r.examples.push(v.value as Example); break;
        }
      }
      return r;
    },
    RuleItem(x) { return x.rule(); },
    Title(_k, t) { return { kind: 'title', value: t.ir() }; },
    Priority(_k, n) { return { kind: 'priority', value: n.ir() }; },
    Bench(_k, n) { return { kind: 'bench', value: n.sourceString }; },
    Detect(_k, s) { return { kind: 'detect', value: s.ir() }; },
    Scope(_k, names) { return { kind: 'scope', value: names.asIteration().children.map((c: N) => c.sourceString) }; },
    Match(_k, _i, stmts, _d) { return { kind: 'match', value: stmts.children.map((c: N) => c.rule()) }; },
    PatStmt(name, _eq, first, second, ors, opt) {
      const { line, col } = lineCol(this as unknown as N);
      const a = first.rule() as { callees: string[]; args: PatArg[] };
      const op: PatOp = { name: name.sourceString, callees: a.callees, args: a.args, optional: opt.children.length > 0, line, col };
      if (second.children.length) {
        const b = second.children[0].rule() as { callees: string[]; args: PatArg[] };
        op.ctor = a.args;
        op.args = b.args;
      }
      if (ors.children.length) {
        op.alts = ors.children.map((c: N) => c.rule() as { callees: string[]; args: PatArg[] });
      }
      return op;
    },
    PatOr(_k, call) { return call.rule(); },
    PatCall(callee, _o, args, _c) {
      return { callees: callee.asIteration().children.map((c: N) => c.sourceString), args: args.asIteration().children.map((c: N) => c.rule()) };
    },
    PatArg_kw(name, _eq, v) { return { kw: name.sourceString, val: v.rule() }; },
    PatArg_rest(_d) { return { rest: true }; },
    PatArg_pos(v) { return { val: v.rule() }; },
    PatVal_meta(_d, n) { return { k: 'meta', name: n.sourceString }; },
    PatVal_any(_u) { return { k: 'any' }; },
    PatVal_const(c) { return { k: 'const', v: (c.ir() as { v: Const }).v }; },
    PatVal_ref(n) { return { k: 'ref', name: n.sourceString }; },
    PatVal_name(n) { return { k: 'name', path: n.sourceString }; },
    PatVal_tuple(_o, items, _c, _cl) { return { k: 'tuple', items: items.asIteration().children.map((c: N) => c.rule()) }; },
    Where(_k, _i, cs, _d) { return { kind: 'where', value: cs.children.map((c: N) => c.rule()) }; },
    Constraint(name, _o, args, _c) {
      const { line, col } = lineCol(this as unknown as N);
      return { name: name.sourceString, args: args.asIteration().children.map((c: N) => c.rule()), line, col };
    },
    CArg_meta(_d, n) { return { k: 'meta', name: n.sourceString }; },
    CArg_const(c) { return { k: 'const', v: (c.ir() as { v: Const }).v }; },
    CArg_ref(n) { return { k: 'ref', name: n.sourceString }; },
    Rewrite(_k, kind, _i, lines, _d) {
      const k = kind.rule() as { kind: Rewrite['kind']; target?: string; targetCol?: number };
      // no `target` key where the kind has none: a parse read back from the rule cache has none
      const rw: Rewrite = {
        kind: k.kind, ...(k.target === undefined ? {} : { target: k.target }), ...(k.targetCol === undefined ? {} : { targetCol: k.targetCol }),
        guards: [], code: [], noneAbsent: [], refused: [], line: lineCol(this as unknown as N).line,
      };
      for (const l of lines.children) {
        const v = l.rule() as { kind: string; value: string; line: number };
        if (v.kind === 'guard') rw.guards.push(v.value);
        else if (v.kind === 'import' || v.kind === 'bind') rw.refused.push({ kind: v.kind, line: v.line });
        else if (v.kind === 'noneAbsent') rw.noneAbsent.push(v.value);
        else rw.code.push(v.value);
      }
      return { kind: 'rewrite', value: rw };
    },
    RewriteKind_expr(_k, t) { return { kind: 'expr', target: t.sourceString }; },
    RewriteKind_callee(_k, t) { return { kind: 'callee', target: t.sourceString, targetCol: lineCol(t).col }; },
    RewriteKind_stmts(_k) { return { kind: 'stmts' }; },
    // refused when validated, with the reason: with or without a name
    RewriteKind_init(_k, t) { return t.sourceString ? { kind: 'init', target: t.sourceString } : { kind: 'init' }; },
    RewriteLine_noneAbsent(_k, _d, n) { return { kind: 'noneAbsent', value: n.sourceString }; },
    RewriteLine_guard(_k, s) { return { kind: 'guard', value: s.ir() }; },
    RewriteLine_import(_k, _s) { return { kind: 'import', line: lineCol(this as unknown as N).line }; },
    RewriteLine_bind(_k, _n, _eq, _s) { return { kind: 'bind', line: lineCol(this as unknown as N).line }; },
    RewriteLine_code(s) { return { kind: 'code', value: s.ir() }; },
    Kernel(_k, target, library, callee, reqs) {
      const { line } = lineCol(this as unknown as N);
      return { kind: 'kernel', value: { target: target.sourceString, library: library.sourceString, callee: callee.ir(), requires: reqs.children.map((r: N) => r.rule()), line } };
    },
    KernelReq(_k, s) { return s.ir(); },
    Tune(_k, name, _in, _o, values, _c) { return { kind: 'tune', value: [name.sourceString, values.asIteration().children.map((c: N) => (c.ir() as { v: Const }).v)] }; },
    Example(_k, before, after, opts) {
      const ex: Example = { before: before.ir(), after: after.ir(), shapes: [], dtype: 'fp32', atol: 1e-5, rtol: 1e-4, line: lineCol(this as unknown as N).line };
      for (const o of opts.children) Object.assign(ex, o.rule());
      return { kind: 'example', value: ex };
    },
    ExampleOpt_shapes(_k, _o, ints, _c) { return { shapes: ints.asIteration().children.map((c: N) => c.ir()) }; },
    ExampleOpt_dtype(_k, d) { return { dtype: d.sourceString }; },
    ExampleOpt_atol(_k, n) { return { atol: (n.ir() as { v: number }).v }; },
    ExampleOpt_rtol(_k, n) { return { rtol: (n.ir() as { v: number }).v }; },
    ExampleOpt_model(_k, s) { return { model: s.ir() }; },
  });
}

