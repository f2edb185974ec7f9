// Lists of layers built up in __init__ before they become a Sequential:
//   layers = [conv, bn]; layers.append(act); layers.extend([...]); layers += [...]
//   self.features = nn.Sequential(*layers)
// The list's items are kept as the local's value, so the Sequential holds them; where the list
// was built is kept too, so a Conv→BN pair inside it is placed at the list, not at the Sequential.
// A Sequential built into a local first (`ds = nn.Sequential(...)`; `self.downsample = ds`) is
// placed at the local's statement, where its call is.
import type { Expr, Span } from '../dsl/ir.js';
import { sameNode, type SyntaxNode } from '../parse/python.js';
import { staticExpr, type StaticScope } from './static.js';
import { field } from './symbols.js';

export class LocalLists {
  private spans = new Map<string, Span>();
  /** `spanAt`: a statement's span in the file being analysed. */
  constructor(private readonly spanAt: (stmt: SyntaxNode) => Span) {}

  /** `name = value` at `stmt`: a list literal starts a tracked list; anything else ends one. */
  assigned(name: string, value: Expr, stmt: SyntaxNode): void {
    if (value.k === 'list') this.spans.set(name, this.span(stmt));
    else this.spans.delete(name);
  }

  /** `name.append(x)`, `name.extend([...])` or `name += [...]` on a tracked list: the list's new
   *  value, with its span grown to this statement; undefined when `e` is not one of these. */
  mutated(e: SyntaxNode, stmt: SyntaxNode, scope: StaticScope): { name: string; value: Expr } | undefined {
    let name: string | undefined;
    let added: Expr[] | undefined;
    if (e.type === 'call') {
      const fn = field(e, 'function');
      const obj = fn?.type === 'attribute' ? field(fn, 'object') : null;
      const method = fn?.type === 'attribute' ? field(fn, 'attribute')?.text : undefined;
      const args = (field(e, 'arguments')?.namedChildren ?? []).filter((a) => a.type !== 'comment');
      if (obj?.type !== 'identifier' || args.length !== 1 || args[0].type === 'keyword_argument') return undefined;
      name = obj.text;
      const arg = staticExpr(args[0], scope);
      if (method === 'append') added = [arg];
      else if (method === 'extend' && (arg.k === 'list' || arg.k === 'tuple')) added = arg.items;
      else return undefined;
    } else if (e.type === 'augmented_assignment' && field(e, 'operator')?.text === '+=' && field(e, 'left')?.type === 'identifier') {
      name = field(e, 'left')!.text;
      const arg = staticExpr(field(e, 'right')!, scope);
      if (arg.k !== 'list' && arg.k !== 'tuple') return undefined;
      added = arg.items;
    }
    const span = name ? this.spans.get(name) : undefined;
    const current = name ? scope.env.get(name) : undefined;
    if (!name || !added || !span || current?.k !== 'list') return undefined;
    const end = this.span(stmt);
    this.spans.set(name, { ...span, end: end.end, to: end.to });
    return { name, value: { k: 'list', items: [...current.items, ...added] } };
  }

  /** Where the Sequential an attribute takes was built: the list of `nn.Sequential(*layers)`, or
   *  the statement `ds = nn.Sequential(...)` of `self.x = ds`, where `ds` is read nowhere else
   *  while it holds that Sequential: the rewrite there changes what `ds` is for every reader,
   *  and the analysis saw this one only. */
  builtFrom(value: SyntaxNode): Span | undefined {
    if (value.type === 'identifier') {
      const local = sequentialLocal(value);
      return local && !local.others.length ? this.span(local.stmt) : undefined;
    }
    if (value.type !== 'call' || !/(^|\.)Sequential$/.test(field(value, 'function')?.text ?? '')) return undefined;
    const args = (field(value, 'arguments')?.namedChildren ?? []).filter((a) => a.type !== 'comment');
    if (args.length !== 1 || args[0].type !== 'list_splat' || args[0].namedChildren[0]?.type !== 'identifier') return undefined;
    return this.spans.get(args[0].namedChildren[0].text);
  }

  private span(stmt: SyntaxNode): Span {
    return this.spanAt(stmt);
  }
}

/** The statement `name = nn.Sequential(...)` whose value a read of `name` sees, where that
 *  statement stands in a block around the read (so it has run whenever the read runs), with every
 *  other place the function names `name` while that binding may hold: after the statement, up to
 *  a rebinding in the same block after the read, and before it inside a loop around it (the next
 *  turn sees it there). Undefined where the read sees no such statement. */
export function sequentialLocal(read: SyntaxNode): { stmt: SyntaxNode; others: SyntaxNode[] } | undefined {
  let fn: SyntaxNode | null = read.parent;
  while (fn && fn.type !== 'function_definition' && fn.type !== 'module') fn = fn.parent;
  if (!fn) return undefined;
  const names: SyntaxNode[] = [];
  const walk = (n: SyntaxNode) => {
    if (n.type === 'identifier') { if (n.text === read.text) names.push(n); return; }
    // `self.ds` and `f(ds=...)` name an attribute and a keyword, not the local
    if (n.type === 'attribute') { walk(field(n, 'object')!); return; }
    if (n.type === 'keyword_argument') { walk(field(n, 'value')!); return; }
    n.namedChildren.forEach(walk);
  };
  walk(fn.type === 'module' ? fn : field(fn, 'body') ?? fn);
  // `name = value` as a statement of its own: what rebinds the name for the reads after it
  const bindingStmt = (n: SyntaxNode): SyntaxNode | undefined => {
    const a = n.parent;
    return a?.type === 'assignment' && sameNode(field(a, 'left'), n) && a.parent?.type === 'expression_statement' ? a.parent : undefined;
  };
  const bindings = names.map(bindingStmt);
  let at = -1;
  bindings.forEach((b, i) => { if (b && b.endIndex <= read.startIndex) at = i; });
  const stmt = at >= 0 ? bindings[at] : undefined;
  const call = stmt ? field(stmt.namedChildren[0], 'right') : null;
  if (!stmt || call?.type !== 'call' || !/(^|\.)Sequential$/.test(field(call, 'function')?.text ?? '')) return undefined;
  const block = stmt.parent!;
  if (read.startIndex < block.startIndex || read.endIndex > block.endIndex) return undefined;
  let loop: SyntaxNode | null = block;
  while (loop && loop !== fn && loop.type !== 'for_statement' && loop.type !== 'while_statement') loop = loop.parent;
  const others: SyntaxNode[] = [];
  for (const [i, n] of names.entries()) {
    if (n.startIndex >= stmt.startIndex && n.endIndex <= stmt.endIndex) continue;
    if (sameNode(n, read)) continue;
    if (n.startIndex > read.endIndex && sameNode(bindings[i]?.parent ?? null, block)) break;
    if (n.startIndex > stmt.endIndex || (loop && loop !== fn && n.startIndex >= loop.startIndex)) others.push(n);
  }
  return { stmt, others };
}
