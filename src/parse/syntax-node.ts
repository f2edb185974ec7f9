// The syntax tree the analysis reads: plain JavaScript nodes, whose children are made on first
// use by whichever front end parsed the file (the flat records of the native walk, or a copy
// through tree-sitter's cursor).

/** The text a tree was parsed from, and the maker of a node's children when they are first
 *  asked for. `at` is what the maker gave the node (a record index, or nothing). */
export interface SourceTree {
  readonly text: string;
  makeChildren(node: SyntaxNode, at: number): void;
  /** The named children alone (a third of the nodes are punctuation and keywords, which most
   *  reads never reach). A tree without it makes them all. */
  makeNamed?(node: SyntaxNode, at: number): void;
  /** The child in field `name`, making no more children than that takes. */
  fieldChild?(node: SyntaxNode, at: number, name: string): SyntaxNode | null;
}

/** What a node is, shared by every node of one type in one field: the type, whether it is
 *  named, and the field name it has in its parent. */
export interface NodeKind {
  readonly type: string;
  readonly isNamed: boolean;
  readonly field: string | null;
}

/** The kinds met so far, by a key the front end computes from the type's and field's ids. */
export class NodeKinds {
  private readonly byKey = new Map<number, NodeKind>();
  get(key: number, type: string, isNamed: boolean, field: string | null): NodeKind {
    let kind = this.byKey.get(key);
    if (!kind) this.byKey.set(key, (kind = { type, isNamed, field }));
    return kind;
  }
}

/**
 * A syntax tree node in plain JavaScript. tree-sitter's Node.js nodes cross into native code on
 * every property access and are re-created on every walk, while the analysis reads each node
 * many times (helpers are inlined once per call site), so the tree is held in JavaScript. Every
 * tree read is held to the end of a run, so a node keeps few fields: its type, named flag and
 * field name are one shared kind, and the tree holds the text.
 */
export class SyntaxNode {
  /** Until the tree makes them, what it gave the node to make them from (every tree read is
   *  held to the end of a run, and one field less is a tenth of a node's size); leaves share
   *  one empty list. */
  private _children: SyntaxNode[] | number;
  private _named?: SyntaxNode[];

  constructor(
    private readonly kind: NodeKind,
    readonly startIndex: number,
    readonly endIndex: number,
    readonly parent: SyntaxNode | null,
    private readonly tree: SourceTree,
    /** Whether the tree makes the children on first use (else they are added, or there are none). */
    deferred: boolean,
    at = 0,
  ) {
    this._children = deferred ? at : NO_CHILDREN;
  }

  get type(): string { return this.kind.type; }
  get isNamed(): boolean { return this.kind.isNamed; }
  /** The field name this node has in its parent. */
  get field(): string | null { return this.kind.field; }
  get text(): string { return this.tree.text.slice(this.startIndex, this.endIndex); }
  get children(): SyntaxNode[] {
    const at = this._children;
    if (typeof at !== 'number') return at;
    this._children = NO_CHILDREN;
    this.tree.makeChildren(this, at);
    return this._children as SyntaxNode[];
  }
  get namedChildren(): SyntaxNode[] {
    if (this._named) return this._named;
    const at = this._children;
    if (typeof at === 'number' && this.tree.makeNamed) this.tree.makeNamed(this, at);
    else this._named = namedOf(this.children);
    return this._named!;
  }
  get childCount(): number { return this.children.length; }
  child(i: number): SyntaxNode | null { return this.children[i] ?? null; }
  fieldNameForChild(i: number): string | null { return this.children[i]?.field ?? null; }
  childForFieldName(name: string): SyntaxNode | null {
    const at = this._children;
    if (typeof at === 'number' && this.tree.fieldChild) return this.tree.fieldChild(this, at, name);
    for (const c of this.children) if (c.field === name) return c;
    return null;
  }

  /** @internal used while copying: appends one child */
  static add(parent: SyntaxNode, child: SyntaxNode): void {
    if (parent._children === NO_CHILDREN) parent._children = [];
    (parent._children as SyntaxNode[]).push(child);
  }
  /** @internal sets every child at once */
  static setChildren(parent: SyntaxNode, children: SyntaxNode[]): void {
    parent._children = children;
  }
  /** @internal sets the named children (none: null), before or without the others */
  static setNamed(parent: SyntaxNode, named: SyntaxNode[] | null): void {
    parent._named = named ?? NO_CHILDREN;
  }
  /** @internal the named children, where they were made before the others */
  static namedMade(parent: SyntaxNode): SyntaxNode[] | undefined {
    return parent._named;
  }
}

const NO_CHILDREN: SyntaxNode[] = Object.freeze([]) as unknown as SyntaxNode[];

/** The named ones of `kids`: `kids` itself when all are named (both lists are read-only), else an
 *  exactly sized list, as trees are held to the end of a run. */
function namedOf(kids: SyntaxNode[]): SyntaxNode[] {
  let count = 0;
  for (const c of kids) if (c.isNamed) count++;
  if (count === kids.length) return kids;
  if (count === 0) return NO_CHILDREN;
  const out = new Array<SyntaxNode>(count);
  let k = 0;
  for (const c of kids) if (c.isNamed) out[k++] = c;
  return out;
}

export function sameNode(a: SyntaxNode | null, b: SyntaxNode | null): boolean {
  return !!a && !!b && a.startIndex === b.startIndex && a.endIndex === b.endIndex && a.type === b.type;
}
