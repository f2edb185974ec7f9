// The syntax tree the analysis reads: plain JavaScript nodes, whose children are made on first
// use by whichever front end parsed the file (the flat records of the native walk, or a copy
// through tree-sitter's cursor).

/** Makes a node's children when they are first asked for. `at` is what the maker gave the node
 *  (a record index, or nothing). */
export interface ChildMaker {
  makeChildren(node: SyntaxNode, at: number): void;
}

/**
 * A syntax tree node in plain JavaScript. tree-sitter's Node.js nodes cross into native code on
 * every property access and are re-created on every walk, while the analysis reads each node
 * many times (helpers are inlined once per call site), so the tree is held in JavaScript.
 */
export class SyntaxNode {
  /** Leaves share one empty list; a node's own list is made when its first child is added. */
  private _children: SyntaxNode[] = NO_CHILDREN;
  /** Field name of each child, when any child has one. */
  private _fields: (string | null)[] | null = null;
  private _named?: SyntaxNode[];

  constructor(
    readonly type: string,
    readonly isNamed: boolean,
    readonly startIndex: number,
    readonly endIndex: number,
    readonly parent: SyntaxNode | null,
    private readonly source: string,
    /** Makes the children on first use; null once they are made (or when there are none). */
    private maker: ChildMaker | null = null,
    private readonly at = 0,
  ) {}

  get text(): string { return this.source.slice(this.startIndex, this.endIndex); }
  get children(): SyntaxNode[] {
    if (this.maker) {
      const maker = this.maker;
      this.maker = null;
      maker.makeChildren(this, this.at);
    }
    return this._children;
  }
  get namedChildren(): SyntaxNode[] { return (this._named ??= namedOf(this.children)); }
  get childCount(): number { return this.children.length; }
  child(i: number): SyntaxNode | null { return this.children[i] ?? null; }
  fieldNameForChild(i: number): string | null {
    const kids = this.children;
    return (this._fields && i < kids.length ? this._fields[i] : null) ?? null;
  }
  childForFieldName(name: string): SyntaxNode | null {
    const kids = this.children;
    const i = this._fields ? this._fields.indexOf(name) : -1;
    return i >= 0 ? kids[i] : null;
  }

  /** @internal used while copying: appends one child */
  static add(parent: SyntaxNode, child: SyntaxNode, field: string | null): void {
    if (parent._children === NO_CHILDREN) parent._children = [];
    if (field && !parent._fields) parent._fields = new Array(parent._children.length).fill(null);
    if (parent._fields) parent._fields.push(field);
    parent._children.push(child);
  }
  /** @internal sets every child at once (`fields` null when none has a field name) */
  static setChildren(parent: SyntaxNode, children: SyntaxNode[], fields: (string | null)[] | null): void {
    parent._children = children;
    parent._fields = fields;
  }
  /** @internal leaves the children to `maker`, on first use */
  static defer(node: SyntaxNode, maker: ChildMaker): void { node.maker = maker; }
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
