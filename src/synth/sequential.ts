// Sequential rewriting: a Conv→BN (or Linear→BN) pair adjacent in an nn.Sequential is fused by
// building the Sequential as adopt's FusedSequential instead, guarded like every other rewrite.
import type { Attr, Span } from '../dsl/ir.js';
import type { Site } from '../match/matcher.js';
import type { Rule } from '../match/rule.js';
import type { SyntaxNode } from '../parse/python.js';
import { sequentialLocal } from '../analysis/local-lists.js';
import { KERNELS_ALIAS, type Edit, type SiteResult } from './edits.js';
import { statementOf } from './source.js';

/** Conv→BN (or Linear→BN) adjacent in an nn.Sequential: the Sequential becomes adopt's
 *  FusedSequential, a drop-in subclass with the same children and state-dict keys. */
export function isSequentialCall(n: SyntaxNode): boolean {
  return n.type === 'call' && /(^|\.)Sequential$/.test(n.childForFieldName('function')?.text ?? '');
}

export function planSequential(s: Site, rule: Rule, res: SiteResult, nodes: SyntaxNode[], locate: (span: Span) => SyntaxNode | undefined): Edit | string {
  // a Sequential of a list built up before it (`self.layers = nn.Sequential(*layers)`): the site
  // is where the list is built, the edit where the attribute is assigned
  const attr = listAttr(s);
  const attrStmt = attr && statementOf(locate(attr.span) ?? nodes[0]);
  const stmt = statementOf(nodes[0]);
  if (!stmt) return 'cannot locate the nn.Sequential in __init__';
  let call: SyntaxNode | undefined;
  const find = (n: SyntaxNode) => {
    if (call) return;
    if (isSequentialCall(n)) { call = n; return; }
    n.namedChildren.forEach(find);
  };
  if (attrStmt) find(attrStmt);
  if (!call && isSequentialCall(nodes[0])) call = nodes[0];
  if (!call) find(stmt);
  if (!call) return elsewhere(stmt) ?? 'the nn.Sequential call is not in this statement';
  const fn = call.childForFieldName('function')!;
  const enabled = `${KERNELS_ALIAS}.enabled('${rule.name}')`;
  res.guards = [`${KERNELS_ALIAS} is not None`, enabled];
  return {
    start: fn.startIndex, end: fn.endIndex,
    text: `(${KERNELS_ALIAS}.FusedSequential if ${KERNELS_ALIAS} is not None and ${enabled} else ${fn.text})`,
    rule: s.rule, line: s.lines[0],
  };
}

/** The attribute whose Sequential is built from a list assembled earlier in __init__: its chain
 *  spans the list (see analysis/local-lists.ts), and the Sequential is in its own statement. */
function listAttr(s: Site): Attr | undefined {
  const op = Object.values(s.ops).find((o) => !!o);
  if (!op) return undefined;
  return s.view.module?.attrs.find((a) => a.built && !a.built.file && !a.span.file && a.built.start === op.span.start && a.built.end === op.span.end
    && a.value.k === 'call' && /(^|\.)Sequential$/.test(a.value.callee));
}

/** Why `self.x = ds` is not rewritten at `ds = nn.Sequential(...)`: `ds` is read elsewhere too,
 *  where the analysis did not follow it (see analysis/local-lists.ts). */
function elsewhere(stmt: SyntaxNode): string | undefined {
  const e = stmt.type === 'expression_statement' ? stmt.namedChildren[0] : undefined;
  const right = e?.type === 'assignment' ? e.childForFieldName('right') : null;
  const local = right?.type === 'identifier' ? sequentialLocal(right) : undefined;
  if (!local?.others.length) return undefined;
  let root = stmt;
  while (root.parent) root = root.parent;
  const lineOf = (n: SyntaxNode) => root.text.slice(0, n.startIndex - root.startIndex).split('\n').length;
  const lines = [...new Set(local.others.map(lineOf))];
  return `the nn.Sequential is built into ${right!.text} at line ${lineOf(local.stmt)}, and ${right!.text} is also used at line${lines.length > 1 ? 's' : ''} ${lines.join(', ')}: `
    + `rewriting it there would change it for ${lines.length > 1 ? 'those uses' : 'that use'} too, which the analysis did not follow`;
}
