// The synthesis stage's view of a source file: text, syntax tree, and the node at an IR span.
import type { Span } from '../dsl/ir.js';
import { parsePython, type ParsedFile, type SyntaxNode } from '../parse/python.js';
import { posAt, readSource, sourceFromText, type SourceText } from '../parse/source.js';
import { lineLengthFor } from './wrap.js';

export interface SynthFile {
  path: string;
  source: SourceText;
  root: SyntaxNode;
  hadErrors: boolean;
  newline: string;
  bom: boolean;
  /** The line length added lines are wrapped at (the file's formatter configuration, or 88). */
  lineLength: number;
}

/** Parsed files handed forward by the analysis stage (the same text it analysed). */
export type ParsedLookup = (path: string) => ParsedFile | undefined;

export function openSynthFile(path: string, known?: ParsedLookup): SynthFile | { error: string } {
  let parsed = known?.(path);
  if (!parsed) {
    const r = readSource(path);
    if (!r.ok) return { error: `${r.diagnostic.file}:${r.diagnostic.line}:${r.diagnostic.col}: ${r.diagnostic.message}` };
    parsed = parsePython(r.source);
  }
  const source = parsed.source;
  if (source.encoding !== 'utf-8') return { error: `${path}: declared encoding '${source.encoding}' is not rewritten (only UTF-8 files are)` };
  const r = { source };
  const raw = r.source.text;
  return {
    path, source: r.source, root: parsed.root, hadErrors: parsed.diagnostics.some((d) => d.severity === 'error'),
    newline: raw.includes('\r\n') ? '\r\n' : '\n', bom: false, lineLength: lineLengthFor(path),
  };
}

/** UTF-16 index of a span's start/end, from its line:col (columns count UTF-16 units). */
export function indexOf(src: SourceText, pos: { line: number; col: number }): number {
  return src.lineStarts[pos.line - 1] + pos.col - 1;
}

/** The innermost node covering exactly [start, end), or the smallest one covering it. */
export function nodeAt(root: SyntaxNode, start: number, end: number): SyntaxNode | undefined {
  let node = root;
  for (;;) {
    // a block holding one statement spans exactly that statement: the statement is meant
    if (node.startIndex === start && node.endIndex === end && node.isNamed && !(node.type === 'block' && node.namedChildren.length === 1)) {
      // prefer the outermost named node with this exact range, as tree-sitter nests wrappers
      return node;
    }
    const child = coveringChild(node.namedChildren, start, end);
    if (!child) return node.startIndex <= start && node.endIndex >= end ? node : undefined;
    node = child;
  }
}

/** The first of `kids` (in source order) covering [start, end), found by binary search: a module
 *  of thousands of classes is searched once per lookup, and lookups are made per site. */
function coveringChild(kids: SyntaxNode[], start: number, end: number): SyntaxNode | undefined {
  // children are ordered and do not overlap, so their ends do not decrease: skip those ending
  // before `end`, then the first one that starts early enough covers the range
  let lo = 0;
  let hi = kids.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (kids[mid].endIndex < end) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < kids.length && kids[i].startIndex <= start; i++) if (kids[i].endIndex >= end) return kids[i];
  return undefined;
}

/** The 1-based line of a UTF-16 index. */
export function lineAt(src: SourceText, index: number): number {
  return posAt(src, index).line;
}

export function nodeOfSpan(f: SynthFile, span: Span): SyntaxNode | undefined {
  return nodeAt(f.root, indexOf(f.source, span.from), indexOf(f.source, span.to));
}

const STATEMENT_PARENTS = new Set(['block', 'module']);

/** The statement that contains a node: its ancestor whose parent is a block. */
export function statementOf(node: SyntaxNode): SyntaxNode | undefined {
  let n: SyntaxNode | null = node;
  while (n && n.parent && !STATEMENT_PARENTS.has(n.parent.type)) n = n.parent;
  return n?.parent ? n : undefined;
}

export function lineStartIndex(src: SourceText, index: number): number {
  return src.text.lastIndexOf('\n', index - 1) + 1;
}

export function lineEndIndex(src: SourceText, index: number): number {
  const nl = src.text.indexOf('\n', index);
  const end = nl < 0 ? src.text.length : nl;
  return src.text[end - 1] === '\r' ? end - 1 : end;
}

export function indentationAt(src: SourceText, index: number): string {
  const start = lineStartIndex(src, index);
  return /^[ \t]*/.exec(src.text.slice(start))![0];
}

/** One level of indentation as the file writes it: a tab where the file indents its blocks with
 *  tabs, four spaces otherwise. Code added one level deeper keeps the file's style, so a tabbed
 *  file never gets a block whose lines mix the two (Python's TabError). */
export function fileIndentUnit(text: string): string {
  // the first line of the first block: the line after one ending with ':'
  const m = /:[ \t]*(?:#[^\n]*)?\r?\n(?:[ \t]*\r?\n)*([ \t]+)\S/.exec(text);
  return m && m[1].startsWith('\t') ? '\t' : '    ';
}

/** One level of indentation below the line at `index`: a tab where that line is indented with a
 *  tab (or, at the top level, where the file indents with tabs), four spaces otherwise. */
export function indentUnitAt(src: SourceText, index: number): string {
  const own = indentationAt(src, index);
  if (own.includes('\t')) return '\t';
  return own ? '    ' : fileIndentUnit(src.text);
}

/** Every identifier node under `root` (names read or written, in any expression). */
export function identifierNodes(root: SyntaxNode): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  const stack = [root];
  while (stack.length) {
    const x = stack.pop()!;
    if (x.type === 'identifier') out.push(x);
    else stack.push(...x.namedChildren);
  }
  return out;
}

const NAME = /[\p{ID_Start}_][\p{ID_Continue}]*/gu;
// string literals (prefixed, triple-quoted or not) and comments, which hold no names read
const NOT_CODE = /(?:[rRbBuU]{0,2})(?:'''[\s\S]*?'''|"""[\s\S]*?"""|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")|#[^\n]*/g;

/** The identifiers in a piece of Python code (names read, attribute and keyword names, keywords),
 *  in source order, without parsing it: the synthesiser asks this of every guard it renders.
 *  Code with an f-string, whose braces hold code, is parsed. */
export function namesIn(code: string): string[] {
  if (/(^|[^\w])[rRbB]?[fF][rR]?['"]/.test(code)) return identifierNodes(parsePython(sourceFromText('<code>', code)).root).map((n) => n.text).reverse();
  const out: string[] = [];
  const plain = code.replace(NOT_CODE, ' ');
  for (const m of plain.matchAll(NAME)) {
    // a name, not the tail of a number (`1e5`, `0x1f`)
    if (m.index === 0 || !/\p{ID_Continue}/u.test(plain[m.index - 1])) out.push(m[0]);
  }
  return out;
}

/** The plain-name condition a read is under: `x if COND else y` (read in x), `if COND:` (read in
 *  its body, no elif/else taken for it). Undefined when the read is unconditional. */
export function readCondition(read: SyntaxNode, fn: SyntaxNode | null): string | undefined {
  const simple = (c: SyntaxNode | null | undefined) => (c && c.type === 'identifier' ? c.text : undefined);
  for (let n: SyntaxNode = read; n.parent && n !== fn; n = n.parent) {
    const p = n.parent;
    if (p.type === 'conditional_expression') {
      const [then] = p.namedChildren;
      if (then.startIndex <= read.startIndex && read.endIndex <= then.endIndex) return simple(p.namedChildren[1]);
      return undefined;
    }
    if (p.type === 'if_statement') {
      const body = p.childForFieldName('consequence');
      if (body && body.startIndex <= read.startIndex && read.endIndex <= body.endIndex) return simple(p.childForFieldName('condition'));
      return undefined;
    }
  }
  return undefined;
}

