// A match wholly inside a helper defined in another file (an imported apply_rotary_emb) is
// rewritten where this method calls the helper: the call is replaced by the kernel's result. That
// is right only when the call's value is the matched value itself, so the helper must hand it
// back as it is, in its one return statement.
import type { Op } from '../dsl/ir.js';
import type { SyntaxNode } from '../parse/python.js';
import { nodeOfSpan, openSynthFile, type ParsedLookup } from './source.js';

/** Whether an op was inlined from a helper of another file. */
export const fromOtherFile = (o: Op): boolean => !!(o.via?.length && o.site && o.span.file);

/** Why the call through which `target` was inlined does not return exactly its value; undefined
 *  when it does. */
export function callReturnFailure(target: Op, known?: ParsedLookup): string | undefined {
  const helper = target.via![target.via!.length - 1].split('.').pop();
  if (target.via!.length !== 1) return `the matched value is computed in a helper that ${target.via![0].split('.').pop()} calls, not returned by the call here`;
  const opened = openSynthFile(target.span.file!, known);
  if ('error' in opened) return opened.error;
  let node: SyntaxNode | null | undefined = nodeOfSpan(opened, target.span);
  while (node?.parent?.type === 'parenthesized_expression') node = node.parent;
  const ret = node?.parent;
  let fn: SyntaxNode | null | undefined = ret;
  while (fn && fn.type !== 'function_definition') fn = fn.parent;
  if (ret?.type !== 'return_statement' || !fn) return `helper ${helper} does not return the matched value as it is (it is cast, combined or stored first)`;
  const returns: SyntaxNode[] = [];
  const walk = (n: SyntaxNode) => {
    if (n.type === 'return_statement') returns.push(n);
    else if (n.type !== 'function_definition' && n.type !== 'lambda') n.namedChildren.forEach(walk);
  };
  fn.childForFieldName('body')?.namedChildren.forEach(walk);
  return returns.length === 1 ? undefined : `helper ${helper} has ${returns.length} return statements: the call's value is not always the matched one`;
}
