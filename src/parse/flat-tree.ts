// The syntax tree from the native walk (src/parse/native/flat_tree.c): one call parses a file and returns
// every node as a fixed-size record in pre-order, so nodes are made in JavaScript without calls
// into native code, each level on first use. The addon is built by scripts/build-native.mjs (the
// package's install script, and `npm run build`); when it is missing (no compiler at install, or
// install scripts not run) or does not load, the front end copies the tree through tree-sitter's
// cursor instead (cursor-copy.ts), with the same result, after one note saying so: npm does not
// show what an installed package's build printed, so the note is given where adopt runs.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { ScanNode } from './syntax-errors.js';
import { NodeKinds, SyntaxNode, type NodeKind, type SourceTree } from './syntax-node.js';

const require = createRequire(import.meta.url);

/** Where scripts/build-native.mjs writes the addon (from src/parse or dist/parse alike). */
export const ADDON_PATH = fileURLToPath(new URL('../../build/native/flat_tree.node', import.meta.url));
const BUILD_SCRIPT = fileURLToPath(new URL('../../scripts/build-native.mjs', import.meta.url));

/** `0`: copy the tree through tree-sitter's cursor even where the addon is built; a path: load
 *  the addon from there instead of ADDON_PATH. */
export const NATIVE_TREE_ENV = 'ADOPT_NATIVE_TREE';

interface Addon {
  setLanguage(language: unknown): void;
  names(): { types: string[]; fields: (string | null)[] };
  parse(text: string, maxDepth?: number): Uint32Array;
}

// The record layout of flat_tree.c: four words per node.
const WORDS = 4;
const NAMED = 1;
const MISSING = 2;
const HAS_ERROR = 4;
/** The bits of a record's first word that make its kind: symbol, field, named flag. */
const KIND_BITS = 0x01ffffff;
const FIELD_BITS = 0xff << 16;

export class FlatParser {
  private readonly types: string[];
  private readonly fields: (string | null)[];
  private readonly kinds = new NodeKinds();

  constructor(private readonly addon: Addon) {
    ({ types: this.types, fields: this.fields } = addon.names());
  }

  /** The whole tree of `text`. */
  parse(text: string): FlatTree {
    return new FlatTree(this.addon.parse(text), text, this.types, this.fields, this.kinds);
  }

  /** The root and the nodes down to `depth` levels below it (their ranges and flags only). */
  shallow(text: string, depth: number): FlatTree {
    return new FlatTree(this.addon.parse(text, depth), text, this.types, this.fields, this.kinds);
  }
}

export class FlatTree implements SourceTree {
  constructor(
    private readonly data: Uint32Array,
    readonly text: string,
    private readonly types: string[],
    private readonly fields: (string | null)[],
    private readonly kinds: NodeKinds,
  ) {}

  /** The kind of the record whose first word is `head`: its symbol, field and named flag. */
  private kind(head: number): NodeKind {
    return this.kinds.get(head & KIND_BITS, this.types[head & 0xffff], ((head >>> 24) & NAMED) !== 0, this.fields[(head >>> 16) & 0xff]);
  }

  get hasError(): boolean { return ((this.data[0] >>> 24) & HAS_ERROR) !== 0; }

  /** The root as a SyntaxNode; its descendants are made as they are asked for. */
  root(): SyntaxNode {
    const d = this.data;
    return new SyntaxNode(this.kind(d[0] & ~FIELD_BITS), d[1], d[2], null, this, d[3] > 1, 0);
  }

  /** Every child; those named that were made before are kept, so each node is made once. */
  makeChildren(node: SyntaxNode, at: number): void {
    const d = this.data;
    const end = at + d[at * WORDS + 3];
    // Every tree is held to the end of the run: a list grown by push keeps up to 16 spare slots,
    // which the collector then copies, so count first and allocate the list exactly.
    let count = 0;
    for (let i = at + 1; i < end; i += d[i * WORDS + 3]) count++;
    const named = SyntaxNode.namedMade(node);
    const kids = new Array<SyntaxNode>(count);
    for (let i = at + 1, k = 0, n = 0; i < end; k++) {
      const w = i * WORDS;
      const head = d[w];
      kids[k] = named && ((head >>> 24) & NAMED) !== 0 ? named[n++] : this.make(node, i);
      i += d[w + 3];
    }
    SyntaxNode.setChildren(node, kids);
  }

  makeNamed(node: SyntaxNode, at: number): void {
    const d = this.data;
    const end = at + d[at * WORDS + 3];
    let count = 0;
    let named = 0;
    for (let i = at + 1; i < end; i += d[i * WORDS + 3]) {
      count++;
      if (((d[i * WORDS] >>> 24) & NAMED) !== 0) named++;
    }
    if (named === count) {
      this.makeChildren(node, at);
      SyntaxNode.setNamed(node, node.children);
      return;
    }
    const kids = named ? new Array<SyntaxNode>(named) : null;
    for (let i = at + 1, k = 0; kids && i < end; i += d[i * WORDS + 3]) {
      if (((d[i * WORDS] >>> 24) & NAMED) !== 0) kids[k++] = this.make(node, i);
    }
    SyntaxNode.setNamed(node, kids);
  }

  fieldChild(node: SyntaxNode, at: number, name: string): SyntaxNode | null {
    const d = this.data;
    const end = at + d[at * WORDS + 3];
    for (let i = at + 1, k = 0, n = 0; i < end; i += d[i * WORDS + 3], k++) {
      const head = d[i * WORDS];
      const isNamed = ((head >>> 24) & NAMED) !== 0;
      if (this.fields[(head >>> 16) & 0xff] === name) return isNamed ? node.namedChildren[n] : node.children[k];
      if (isNamed) n++;
    }
    return null;
  }

  private make(parent: SyntaxNode, i: number): SyntaxNode {
    const w = i * WORDS;
    const size = this.data[w + 3];
    return new SyntaxNode(this.kind(this.data[w]), this.data[w + 1], this.data[w + 2], parent, this, size > 1, i);
  }

  /** The top-level nodes: ranges and whether each is a comment. */
  topLevel(): { start: number; end: number; comment: boolean }[] {
    const d = this.data;
    const out: { start: number; end: number; comment: boolean }[] = [];
    for (let i = 1; i < d[3];) {
      const w = i * WORDS;
      out.push({ start: d[w + 1], end: d[w + 2], comment: this.types[d[w] & 0xffff] === 'comment' });
      i += d[w + 3];
    }
    return out;
  }

  /** The record at `at` seen as the syntax-error scan sees tree-sitter's nodes. */
  scanNode(at = 0): ScanNode {
    const d = this.data;
    const w = at * WORDS;
    const flags = d[w] >>> 24;
    const kids: number[] = [];
    for (let i = at + 1; i < at + d[w + 3]; i += d[i * WORDS + 3]) kids.push(i);
    return {
      type: this.types[d[w] & 0xffff], startIndex: d[w + 1], endIndex: d[w + 2],
      isMissing: (flags & MISSING) !== 0, hasError: (flags & HAS_ERROR) !== 0,
      childCount: kids.length, child: (i: number) => (i < kids.length ? this.scanNode(kids[i]) : null),
    };
  }
}

let loaded: FlatParser | null | undefined;

function fallBack(what: string): void {
  process.stderr.write(`adopt: note: the native syntax-tree walk ${what}; copying syntax trees through tree-sitter's cursor instead (slower, same results). Build it with 'node ${BUILD_SCRIPT}', which says what it needs.\n`);
}

/** The native walk for `language` (tree-sitter-python's `language` external), or null when it is
 *  turned off, or not built or fails to load (then with one note on stderr). */
export function flatParser(language: unknown): FlatParser | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  const setting = process.env[NATIVE_TREE_ENV] ?? '';
  if (setting === '0') return loaded;
  const path = setting || ADDON_PATH;
  if (!setting && !existsSync(path)) {
    fallBack(`is not built (${path})`);
    return loaded;
  }
  try {
    const addon = require(path) as Addon;
    addon.setLanguage(language);
    loaded = new FlatParser(addon);
  } catch (e) {
    fallBack(`${path} did not load (${(e as Error).message.split('\n')[0]})`);
  }
  return loaded;
}
