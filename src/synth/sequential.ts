// Sequential rewriting: a Conv→BN (or Linear→BN) pair adjacent in an nn.Sequential is fused by
// building the Sequential as adopt's FusedSequential instead, guarded like every other rewrite.
import type { Site } from '../match/matcher.js';
import type { Rule } from '../match/rule.js';
import type { SyntaxNode } from '../parse/python.js';
import { KERNELS_ALIAS, type Edit, type SiteResult } from './edits.js';
import { statementOf } from './source.js';

/** Conv→BN (or Linear→BN) adjacent in an nn.Sequential: the Sequential becomes adopt's
 *  FusedSequential, a drop-in subclass with the same children and state-dict keys. */
export function isSequentialCall(n: SyntaxNode): boolean {
  return n.type === 'call' && /(^|\.)Sequential$/.test(n.childForFieldName('function')?.text ?? '');
}

export function planSequential(s: Site, rule: Rule, res: SiteResult, nodes: SyntaxNode[]): Edit | string {
  const stmt = statementOf(nodes[0]);
  if (!stmt) return 'cannot locate the nn.Sequential in __init__';
  let call: SyntaxNode | undefined = isSequentialCall(nodes[0]) ? nodes[0] : undefined;
  const find = (n: SyntaxNode) => {
    if (call) return;
    if (n.type === 'call' && /(^|\.)Sequential$/.test(n.childForFieldName('function')?.text ?? '')) { call = n; return; }
    n.namedChildren.forEach(find);
  };
  find(stmt);
  if (!call) return 'the nn.Sequential call is not in this statement';
  const fn = call.childForFieldName('function')!;
  const enabled = `${KERNELS_ALIAS}.enabled('${rule.name}')`;
  res.guards = [`${KERNELS_ALIAS} is not None`, enabled];
  return {
    start: fn.startIndex, end: fn.endIndex,
    text: `(${KERNELS_ALIAS}.FusedSequential if ${KERNELS_ALIAS} is not None and ${enabled} else ${fn.text})`,
    rule: s.rule, line: s.lines[0],
  };
}
