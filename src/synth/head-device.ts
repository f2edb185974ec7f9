// The device of an LM head's logits, read off its input: `logits = self.lm_head(h)` is on h's
// device, and so are its casts, slices, views and copies. Lets a statement between the head and
// the loss (`labels = labels.to(logits.device)`) run before the fused kernel computes the logits.
import type { SyntaxNode } from '../parse/python.js';

/** What a name's value has the device (and, unless `deviceOnly`, the dtype) of: the product of
 *  `a` and `b`, or for a Linear head its input, both `a` and `b`. */
export interface ProductSource {
  a: string; b: string; bmm: boolean; deviceOnly?: boolean;
  /** A name the product is multiplied by in the same statement, which may promote its dtype. */
  times?: string;
}

const CASTS = /^(float|double|half|bfloat16)$/;

/** The head's input an expression's device comes from, or undefined. `linears` are the Linear
 *  submodules of the site (`self.lm_head`); `known` what earlier names hold. */
export function headSource(n: SyntaxNode | null | undefined, linears: ReadonlySet<string>, known: Map<string, ProductSource | null>): ProductSource | undefined {
  while (n?.type === 'parenthesized_expression' && n.namedChildren.length === 1) n = n.namedChildren[0];
  if (!n) return undefined;
  if (n.type === 'identifier') return known.get(n.text)?.deviceOnly ? known.get(n.text)! : undefined;
  if (n.type === 'subscript') return headSource(n.childForFieldName('value'), linears, known);
  if (n.type !== 'call') return undefined;
  const fn = n.childForFieldName('function');
  const args = n.childForFieldName('arguments')?.namedChildren ?? [];
  if (fn && linears.has(fn.text)) {
    // the input written again where the device is read: a name, or an element of one
    const x = args.length === 1 && /^[A-Za-z_]\w*(\[\d+\])?$/.test(args[0].text) ? args[0].text : undefined;
    return x ? { a: x, b: x, bmm: false, deviceOnly: true } : undefined;
  }
  if (fn?.type !== 'attribute') return undefined;
  const inner = headSource(fn.childForFieldName('object'), linears, known);
  const method = fn.childForFieldName('attribute')?.text ?? '';
  if (!inner) return undefined;
  if (/^(view|reshape|contiguous)$/.test(method)) return inner;
  const toDtype = method === 'to' && args.length === 1 && /^(dtype=)?torch\.\w+$/.test(args[0].text);
  return (CASTS.test(method) && !args.length) || toDtype ? inner : undefined;
}
