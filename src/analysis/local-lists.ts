// Lists of layers built up in __init__ before they become a Sequential:
//   layers = [conv, bn]; layers.append(act); layers.extend([...]); layers += [...]
//   self.features = nn.Sequential(*layers)
// The list's items are kept as the local's value, so the Sequential holds them; where the list
// was built is kept too, so a Conv→BN pair inside it is placed at the list, not at the Sequential.
import type { Expr, Span } from '../dsl/ir.js';
import type { SyntaxNode } from '../parse/python.js';
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

  /** Where the list a Sequential is built from was built: `nn.Sequential(*layers)`. */
  builtFrom(value: SyntaxNode): Span | undefined {
    if (value.type !== 'call' || !/(^|\.)Sequential$/.test(field(value, 'function')?.text ?? '')) return undefined;
    const args = (field(value, 'arguments')?.namedChildren ?? []).filter((a) => a.type !== 'comment');
    if (args.length !== 1 || args[0].type !== 'list_splat' || args[0].namedChildren[0]?.type !== 'identifier') return undefined;
    return this.spans.get(args[0].namedChildren[0].text);
  }

  private span(stmt: SyntaxNode): Span {
    return this.spanAt(stmt);
  }
}
