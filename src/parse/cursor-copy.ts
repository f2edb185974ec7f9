// The syntax tree copied out of tree-sitter's Node.js binding with a tree cursor: several calls
// into native code per node. Used when the native walk (flat-tree.ts) is not built or is turned
// off; both give the same tree.
import type Parser from 'tree-sitter';
import { NodeKinds, SyntaxNode, type SourceTree } from './syntax-node.js';

// Type and field names by id, read from native code once per id.
const typeNames: string[] = [];
const typeNamed: boolean[] = [];
const fieldNames: (string | null)[] = [];
/** Kinds by type id and field id (type id + 65536 × field id). */
const kinds = new NodeKinds();

type NodeTypeInfo = { type: string; named: boolean; fields?: Record<string, unknown> }[];

let fieldless: ReadonlySet<string> = new Set();

/** Node types whose children never carry a field name, from the grammar's node-types table.
 *  Every call into native code costs about as much as copying a node, so the field of a child
 *  is asked only where one can exist. ERROR and types the table does not list are always asked. */
function fieldlessTypes(info: NodeTypeInfo): ReadonlySet<string> {
  return new Set(info.filter((t) => t.named && Object.keys(t.fields ?? {}).length === 0).map((t) => t.type));
}

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

/** The text of a copied tree; its nodes' children are all copied up front. */
class CopiedTree implements SourceTree {
  constructor(readonly text: string) {}
  makeChildren(): void {}
}

/** A function body left for later: copied from its tree-sitter node on first use (which then
 *  lets tree-sitter's tree go). */
class DeferredBody implements SourceTree {
  constructor(private raw: Parser.SyntaxNode | null, private readonly tree: SourceTree) {}
  get text(): string { return this.tree.text; }
  makeChildren(node: SyntaxNode): void {
    const raw = this.raw;
    if (!raw) return;
    this.raw = null;
    copyChildren(raw.walk(), node, this.tree, false, !raw.hasError);
  }
}

/** Copies the subtree under the cursor's current node into `top` (iteratively: generated files
 *  can nest deeper than the JS stack). With `deferBodies`, function bodies are left for later.
 *  `clean`: the subtree has no syntax errors, so token shapes can be trusted. */
function copyChildren(cursor: Parser.TreeCursor, top: SyntaxNode, tree: SourceTree, deferBodies: boolean, clean: boolean): void {
  if (!cursor.gotoFirstChild()) return;
  let parent = top;
  let fields = !fieldless.has(top.type);
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
    let field: string | null = null;
    const fid = (fields && cursor.currentFieldId) || 0; // undefined where the node has no field
    if (fid) {
      field = fieldNames[fid] as string | null;
      if (field === undefined) field = fieldNames[fid] = cursor.currentFieldName;
    }
    const end = shape === Shape.Literal ? start + type.length : cursor.endIndex;
    const defer = deferBodies && type === 'block' && parent.type === 'function_definition';
    const kind = kinds.get(tid + 65536 * fid, type, typeNamed[tid], field);
    const node = new SyntaxNode(kind, start, end, parent, defer ? new DeferredBody(cursor.currentNode, tree) : tree, defer);
    SyntaxNode.add(parent, node);
    if (!defer && shape === Shape.Any && cursor.gotoFirstChild()) { parent = node; fields = !fieldless.has(type); continue; }
    while (!cursor.gotoNextSibling()) {
      if (!cursor.gotoParent() || parent === top) return;
      parent = parent.parent!;
      fields = !fieldless.has(parent.type);
    }
  }
}

/** The tree of `tree` (parsed from `text`) in JavaScript; `nodeTypes` is the grammar's
 *  node-types table. */
export function copyTree(tree: Parser.Tree, text: string, nodeTypes: NodeTypeInfo): SyntaxNode {
  if (!fieldless.size) fieldless = fieldlessTypes(nodeTypes);
  const cursor = tree.walk();
  const copied = new CopiedTree(text);
  const kind = { type: cursor.nodeType, isNamed: cursor.nodeIsNamed, field: null };
  const root = new SyntaxNode(kind, cursor.startIndex, cursor.endIndex, null, copied, false);
  copyChildren(cursor, root, copied, true, !tree.rootNode.hasError);
  return root;
}
