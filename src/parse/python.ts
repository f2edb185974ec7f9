// Python front end: tree-sitter parsing with syntax errors turned into diagnostics, so a file
// with errors is still analysed around them.
import { createRequire } from 'node:module';
import type Parser from 'tree-sitter';
import type { Diagnostic } from '../diag.js';
import { copyTree } from './cursor-copy.js';
import { flatParser } from './flat-tree.js';
import type { SourceText } from './source.js';
import { python3Refusal } from './python3-rules.js';
import { collectSyntaxErrors } from './syntax-errors.js';
import type { SyntaxNode } from './syntax-node.js';

export { SyntaxNode, sameNode } from './syntax-node.js';

const require = createRequire(import.meta.url);
const TreeSitter = require('tree-sitter') as typeof Parser;
const PythonLanguage = require('tree-sitter-python');

export interface ParsedFile {
  source: SourceText;
  root: SyntaxNode;
  diagnostics: Diagnostic[];
}

let parser: Parser | undefined;
function getParser(): Parser {
  if (!parser) {
    parser = new TreeSitter();
    parser.setLanguage(PythonLanguage);
  }
  return parser;
}

// tree-sitter's binding reads long strings in chunks through a callback; a plain string over
// its internal buffer size is also accepted, but the callback keeps memory flat on huge files.
function parseText(text: string): Parser.Tree {
  const p = getParser();
  const CHUNK = 1 << 16;
  return p.parse((index: number) => (index < text.length ? text.slice(index, index + CHUNK) : ''), undefined, { bufferSize: CHUNK } as never);
}

/** tree-sitter's parse alone, nothing copied out: the floor the benchmarks measure the front
 *  end against. */
export function parseOnly(text: string): void {
  parseText(text);
}

/** Whether text parses without syntax errors (no tree kept). */
export function hasSyntaxErrors(text: string): boolean {
  const flat = flatParser(PythonLanguage.language);
  return flat ? flat.shallow(text, 0).hasError : parseText(text).rootNode.hasError;
}

type Span = { start: number; end: number; comment: boolean };

/** The top-level nodes of text (statements and comments) as ranges, or undefined when the text
 *  has syntax errors (no tree kept). */
export function topLevelSpans(text: string): Span[] | undefined {
  const flat = flatParser(PythonLanguage.language);
  if (flat) {
    const tree = flat.shallow(text, 1);
    return tree.hasError ? undefined : tree.topLevel();
  }
  const root = parseText(text).rootNode;
  if (root.hasError) return undefined;
  const out: Span[] = [];
  const cursor = root.walk();
  if (cursor.gotoFirstChild()) {
    do out.push({ start: cursor.startIndex, end: cursor.endIndex, comment: cursor.nodeType === 'comment' });
    while (cursor.gotoNextSibling());
  }
  return out;
}

/** How the tree gets from tree-sitter into JavaScript: the native walk, or tree-sitter's cursor. */
export type FrontEnd = 'native' | 'cursor';

/** The front end parsePython uses by default: the native walk where it is built and loads. */
export function defaultFrontEnd(): FrontEnd {
  return flatParser(PythonLanguage.language) ? 'native' : 'cursor';
}

/** The syntax tree of a file, with its syntax errors as diagnostics; the same tree from either
 *  front end. */
export function parsePython(source: SourceText, front: FrontEnd = defaultFrontEnd()): ParsedFile {
  const diagnostics: Diagnostic[] = [];
  const tooDeep = indentationTooDeep(source);
  if (tooDeep) diagnostics.push(tooDeep);
  const flat = front === 'native' ? flatParser(PythonLanguage.language) : null;
  if (front === 'native' && !flat) throw new Error('the native syntax-tree walk is not built (node scripts/build-native.mjs)');
  if (flat) {
    const tree = flat.parse(source.text);
    if (!tooDeep && tree.hasError) collectSyntaxErrors(source, tree.scanNode(), diagnostics);
    const root = tree.root();
    if (!tooDeep) keepFirstError(diagnostics, python3Refusal(source, root));
    return { source, root, diagnostics };
  }
  const tree = parseText(source.text);
  if (!tooDeep && tree.rootNode.hasError) collectSyntaxErrors(source, tree.rootNode, diagnostics);
  const root = copyTree(tree, source.text, PythonLanguage.nodeTypeInfo);
  if (!tooDeep) keepFirstError(diagnostics, python3Refusal(source, root));
  return { source, root, diagnostics };
}

/** Python reports a file's first syntax error alone: of tree-sitter's and python3Refusal's, the
 *  earlier one. */
function keepFirstError(diagnostics: Diagnostic[], refusal: Diagnostic | undefined): void {
  if (!refusal) return;
  const at = diagnostics.findIndex((d) => d.code === 'syntax');
  if (at < 0) diagnostics.push(refusal);
  else {
    const d = diagnostics[at];
    if (refusal.line < d.line || (refusal.line === d.line && refusal.col < d.col)) diagnostics[at] = refusal;
  }
}

const MAX_INDENT_LEVELS = 100;
/** A line starting with at least the limit's number of white-space characters. */
const DEEP_INDENT = new RegExp(`^[^\\S\\n]{${MAX_INDENT_LEVELS}}`, 'm');

/** CPython refuses more than 100 levels of indentation; tree-sitter then fails at the file's
 *  start, so name the line that crosses the limit instead. One pass over character codes: this
 *  runs on every file, beside the parse. */

function indentationTooDeep(source: SourceText): Diagnostic | undefined {
  const text = source.text;
  // each level is wider than the one it opens in, so no line indented by fewer characters than
  // the limit can reach it: a native regex scan rules most files out without the walk below
  if (!DEEP_INDENT.test(text)) return undefined;
  const stack = [0];
  let open = 0;
  let line = 0;
  for (let start = 0; start <= text.length; line++) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    let body = start;
    while (body < end && isSpace(text.charCodeAt(body))) body++;
    if (open === 0 && body < end && text.charCodeAt(body) !== 35 /* # */) {
      const width = body - start;
      if (width > stack[stack.length - 1]) {
        stack.push(width);
        if (stack.length - 1 >= MAX_INDENT_LEVELS) {
          return { severity: 'error', code: 'syntax', file: source.path, line: line + 1, col: 1, message: `too many levels of indentation (Python allows ${MAX_INDENT_LEVELS})` };
        }
      } else while (width < stack[stack.length - 1]) stack.pop();
    }
    // Continuation lines inside brackets do not open blocks.
    for (let i = body; i < end; i++) {
      const c = text.charCodeAt(i);
      if (c === 40 || c === 91 || c === 123) open++;
      else if ((c === 41 || c === 93 || c === 125) && open > 0) open--;
    }
    start = end + 1;
  }
  return undefined;
}

/** The characters String.prototype.trimStart removes (JavaScript's \s). */
function isSpace(c: number): boolean {
  if (c === 32 || (c >= 9 && c <= 13)) return true;
  return c >= 128 && /\s/.test(String.fromCharCode(c));
}
