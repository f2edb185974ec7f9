// Python front end: tree-sitter parsing with syntax errors turned into diagnostics, so a file
// with errors is still analysed around them.
import { createRequire } from 'node:module';
import type Parser from 'tree-sitter';
import type { Diagnostic } from '../diag.js';
import { posAt, type SourceText } from './source.js';

const require = createRequire(import.meta.url);
const TreeSitter = require('tree-sitter') as typeof Parser;
const PythonLanguage = require('tree-sitter-python');

/**
 * A syntax tree node in plain JavaScript. tree-sitter's Node.js nodes cross into native code on
 * every property access and are re-created on every walk, while the analysis reads each node
 * many times (helpers are inlined once per call site), so the tree is copied out once per file.
 */
export class SyntaxNode {
  /** Leaves share one empty list; a node's own list is made when its first child is copied. */
  private _children: SyntaxNode[] = NO_CHILDREN;
  /** Field name of each child, when any child has one. */
  private _fields: (string | null)[] | null = null;
  private _named?: SyntaxNode[];
  /** Function bodies are copied on first use: many are never analysed. */
  private pending: Parser.SyntaxNode | null = null;

  constructor(
    readonly type: string,
    readonly isNamed: boolean,
    readonly startIndex: number,
    readonly endIndex: number,
    readonly parent: SyntaxNode | null,
    private readonly source: string,
  ) {}

  get text(): string { return this.source.slice(this.startIndex, this.endIndex); }
  get children(): SyntaxNode[] {
    if (this.pending) {
      const raw = this.pending;
      this.pending = null;
      copyChildren(raw.walk(), this, this.source, false, !raw.hasError);
    }
    return this._children;
  }
  get namedChildren(): SyntaxNode[] { return (this._named ??= this.children.filter((c) => c.isNamed)); }
  get childCount(): number { return this.children.length; }
  child(i: number): SyntaxNode | null { return this.children[i] ?? null; }
  childForFieldName(name: string): SyntaxNode | null {
    const kids = this.children;
    const i = this._fields ? this._fields.indexOf(name) : -1;
    return i >= 0 ? kids[i] : null;
  }

  /** @internal used while copying */
  static add(parent: SyntaxNode, child: SyntaxNode, field: string | null): void {
    if (parent._children === NO_CHILDREN) parent._children = [];
    if (field && !parent._fields) parent._fields = new Array(parent._children.length).fill(null);
    if (parent._fields) parent._fields.push(field);
    parent._children.push(child);
  }
  /** @internal */
  static defer(node: SyntaxNode, raw: Parser.SyntaxNode): void { node.pending = raw; }
}

const NO_CHILDREN: SyntaxNode[] = Object.freeze([]) as unknown as SyntaxNode[];

export function sameNode(a: SyntaxNode | null, b: SyntaxNode | null): boolean {
  return !!a && !!b && a.startIndex === b.startIndex && a.endIndex === b.endIndex && a.type === b.type;
}

// Type and field names by id, read from native code once per id.
const typeNames: string[] = [];
const typeNamed: boolean[] = [];
const fieldNames: (string | null)[] = [];

/** Node types whose children never carry a field name, from the grammar's node-types table.
 *  Every call into native code costs about as much as copying a node, so the field of a child
 *  is asked only where one can exist. ERROR and types the table does not list are always asked. */
const FIELDLESS: ReadonlySet<string> = new Set(
  (PythonLanguage.nodeTypeInfo as { type: string; named: boolean; fields?: Record<string, unknown> }[])
    .filter((t) => t.named && Object.keys(t.fields ?? {}).length === 0)
    .map((t) => t.type),
);

/** Tokens of this grammar that carry a name: always leaves, so no call asks for their children. */
const NAMED_TOKENS: ReadonlySet<string> = new Set([
  'identifier', 'integer', 'float', 'comment', 'string_start', 'string_end', 'escape_sequence',
  'escape_interpolation', 'true', 'false', 'none', 'ellipsis', 'type_conversion', 'line_continuation',
]);
const enum Shape { Any, Literal, Token }
const shapes: Shape[] = [];

/** Anonymous nodes are literal tokens whose text is their type, except the two-token operators
 *  'is not' and 'not in'; both kinds of token are leaves. Only where a subtree has no syntax
 *  errors: error recovery inserts zero-width MISSING tokens. */
function shapeOf(type: string, named: boolean): Shape {
  if (!named) return /\s/.test(type) ? Shape.Any : Shape.Literal;
  return NAMED_TOKENS.has(type) ? Shape.Token : Shape.Any;
}

/** Copies the subtree under the cursor's current node into `top` (iteratively: generated files
 *  can nest deeper than the JS stack). With `deferBodies`, function bodies are left for later.
 *  `clean`: the subtree has no syntax errors, so token shapes can be trusted. */
function copyChildren(cursor: Parser.TreeCursor, top: SyntaxNode, text: string, deferBodies: boolean, clean: boolean): void {
  if (!cursor.gotoFirstChild()) return;
  let parent = top;
  let fields = !FIELDLESS.has(top.type);
  for (;;) {
    const tid = cursor.nodeTypeId;
    let type = typeNames[tid];
    if (type === undefined) {
      type = typeNames[tid] = cursor.nodeType;
      typeNamed[tid] = cursor.nodeIsNamed;
      shapes[tid] = shapeOf(type, typeNamed[tid]);
    }
    const shape = clean ? shapes[tid] : Shape.Any;
    const start = cursor.startIndex;
    const node = new SyntaxNode(type, typeNamed[tid], start, shape === Shape.Literal ? start + type.length : cursor.endIndex, parent, text);
    let field: string | null = null;
    const fid = fields ? cursor.currentFieldId : 0;
    if (fid) {
      field = fieldNames[fid] as string | null;
      if (field === undefined) field = fieldNames[fid] = cursor.currentFieldName;
    }
    SyntaxNode.add(parent, node, field);
    if (deferBodies && type === 'block' && parent.type === 'function_definition') SyntaxNode.defer(node, cursor.currentNode);
    else if (shape === Shape.Any && cursor.gotoFirstChild()) { parent = node; fields = !FIELDLESS.has(type); continue; }
    while (!cursor.gotoNextSibling()) {
      if (!cursor.gotoParent() || parent === top) return;
      parent = parent.parent!;
      fields = !FIELDLESS.has(parent.type);
    }
  }
}

function copyTree(tree: Parser.Tree, text: string, clean: boolean): SyntaxNode {
  const cursor = tree.walk();
  const root = new SyntaxNode(cursor.nodeType, cursor.nodeIsNamed, cursor.startIndex, cursor.endIndex, null, text);
  copyChildren(cursor, root, text, true, clean);
  return root;
}

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

const MAX_SYNTAX_REPORTS = 50;

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
  return parseText(text).rootNode.hasError;
}

/** The top-level nodes of text (statements and comments) as ranges, or undefined when the text
 *  has syntax errors (no tree kept). */
export function topLevelSpans(text: string): { start: number; end: number; comment: boolean }[] | undefined {
  const root = parseText(text).rootNode;
  if (root.hasError) return undefined;
  const out: { start: number; end: number; comment: boolean }[] = [];
  const cursor = root.walk();
  if (cursor.gotoFirstChild()) {
    do out.push({ start: cursor.startIndex, end: cursor.endIndex, comment: cursor.nodeType === 'comment' });
    while (cursor.gotoNextSibling());
  }
  return out;
}

export function parsePython(source: SourceText): ParsedFile {
  const tree = parseText(source.text);
  const raw = tree.rootNode;
  const diagnostics: Diagnostic[] = [];
  const tooDeep = indentationTooDeep(source);
  if (tooDeep) diagnostics.push(tooDeep);
  else if (raw.hasError) collectSyntaxErrors(source, raw, diagnostics);
  return { source, root: copyTree(tree, source.text, !raw.hasError), diagnostics };
}

const MAX_INDENT_LEVELS = 100;

/** CPython refuses more than 100 levels of indentation; tree-sitter then fails at the file's
 *  start, so name the line that crosses the limit instead. One pass over character codes: this
 *  runs on every file, beside the parse. */
function indentationTooDeep(source: SourceText): Diagnostic | undefined {
  const text = source.text;
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

function collectSyntaxErrors(source: SourceText, root: Parser.SyntaxNode, out: Diagnostic[]): void {
  const stack: Parser.SyntaxNode[] = [root];
  while (stack.length && out.length < MAX_SYNTAX_REPORTS) {
    const node = stack.pop()!;
    if (node.type === 'ERROR' || node.isMissing) {
      const p = posAt(source, node.startIndex);
      const snippet = source.text.slice(node.startIndex, Math.min(node.endIndex, node.startIndex + 30)).split('\n')[0];
      out.push({
        severity: 'error', code: 'syntax', file: source.path, line: p.line, col: p.col,
        message: node.isMissing ? `syntax error: missing '${node.type}'` : `syntax error near '${snippet}'`,
      });
      if (node.type === 'ERROR') continue;
    }
    if (!node.hasError) continue;
    for (let i = node.childCount - 1; i >= 0; i--) stack.push(node.child(i)!);
  }
  out.sort((a, b) => a.line - b.line || a.col - b.col);
  if (out.length >= MAX_SYNTAX_REPORTS) {
    out.push({ severity: 'note', code: 'syntax', file: source.path, line: out[out.length - 1].line, col: 1, message: `further syntax errors not listed (limit ${MAX_SYNTAX_REPORTS})` });
  }
}
