// Grouping of filled placeholders. A placeholder is replaced by source text, and text that is an
// expression of lower precedence than the place it lands in would be regrouped by Python
// (`{s} / {c}` with s = `s + m` reads `s + m / 2`). Both sides are read with the Python parser:
// the template, with its placeholders as names, says how tightly each place binds, and the bound
// text how tightly it holds together; the text is parenthesized only where the second is looser.
import { hasSyntaxErrors, parsePython, type SyntaxNode } from '../parse/python.js';
import { sourceFromText } from '../parse/source.js';

/** Python's precedence levels, loosest first; an atom or a primary (name, call, attribute,
 *  subscript, display, parenthesized) binds tightest. */
const PRIMARY = 15;
const CONDITIONAL = 1;
const BINARY: Record<string, number> = {
  '|': 6, '^': 7, '&': 8, '<<': 9, '>>': 9, '+': 10, '-': 10, '*': 11, '/': 11, '//': 11, '%': 11, '@': 11, '**': 13,
};

function operatorOf(n: SyntaxNode): string {
  return n.childForFieldName('operator')?.text ?? n.children.find((c) => !c.isNamed)?.text ?? '';
}

/** How tightly an expression node holds together. */
function precedence(n: SyntaxNode): number {
  switch (n.type) {
    case 'expression_list': case 'yield': return -2;
    case 'named_expression': return -1;
    case 'lambda': return 0;
    case 'conditional_expression': return CONDITIONAL;
    case 'boolean_operator': return operatorOf(n) === 'or' ? 2 : 3;
    case 'not_operator': return 4;
    case 'comparison_operator': return 5;
    case 'binary_operator': return BINARY[operatorOf(n)] ?? 6;
    case 'unary_operator': return 12;
    case 'await': return 14;
    default: return PRIMARY;
  }
}

/** The least precedence text standing as child `n` of its parent keeps its grouping with;
 *  undefined where any expression does (an argument, an element, a keyword value, a statement's
 *  right-hand side: a place delimited by commas, brackets or the line). */
function required(n: SyntaxNode): number | undefined {
  const p = n.parent;
  if (!p) return undefined;
  switch (p.type) {
    case 'attribute': return n.field === 'object' ? PRIMARY : undefined;
    case 'call': return n.field === 'function' ? PRIMARY : undefined;
    case 'subscript': return n.field === 'value' ? PRIMARY : undefined;
    case 'await': return PRIMARY;
    case 'unary_operator': return 12;
    case 'not_operator': return 4;
    // `a < b < c` is a chain, not `(a < b) < c`: every operand binds tighter than a comparison
    case 'comparison_operator': return 6;
    case 'binary_operator': case 'boolean_operator': {
      const level = precedence(p);
      // `**` groups to the right and binds tighter than a unary operator on its left only
      if (level === 13) return n.field === 'left' ? 14 : 12;
      return n.field === 'left' ? level : level + 1;
    }
    case 'conditional_expression': {
      const operands = p.namedChildren;
      return operands.indexOf(n) === operands.length - 1 ? CONDITIONAL : CONDITIONAL + 1;
    }
    case 'list_splat': case 'dictionary_splat': return 6;
    default: return undefined;
  }
}

const STAND_IN = /^__adopt_placeholder_(\d+)$/;

/** For each placeholder of a template, in order, the least precedence its text must have to be
 *  written as is; `stand` gives the stand-in of placeholder k at index `at` (a name, or nothing
 *  where the placeholder writes no expression). Empty where the template does not parse with
 *  stand-ins: the caller then decides by its own means. */
export function placeholderContexts(template: string, re: RegExp, stand: (m: string, at: number) => 'name' | 'suffix' | 'none'): (number | undefined)[] {
  let k = 0;
  const text = template.replace(re, (m: string, ...rest: unknown[]) => {
    const at = rest[rest.length - 2] as number;
    const name = `__adopt_placeholder_${k++}`;
    const kind = stand(m, at);
    return kind === 'name' ? name : kind === 'suffix' ? `.${name}` : '';
  });
  const out: (number | undefined)[] = Array(k).fill(undefined);
  const program = [`${text}\n`, `(${text})\n`].find((t) => !hasSyntaxErrors(t));
  if (program === undefined) return [];
  const visit = (n: SyntaxNode): void => {
    const m = n.type === 'identifier' ? STAND_IN.exec(n.text) : null;
    if (m) out[Number(m[1])] = required(n);
    n.children.forEach(visit);
  };
  visit(parsePython(sourceFromText('<template>', program)).root);
  return out;
}

/** How tightly source text holds together as an expression; undefined where it is not one
 *  expression (a fragment, an argument list), which is then written as is. */
export function textPrecedence(text: string): number | undefined {
  if (!text.trim() || hasSyntaxErrors(`${text}\n`)) return undefined;
  const stmts = parsePython(sourceFromText('<value>', `${text}\n`)).root.namedChildren;
  if (stmts.length !== 1 || stmts[0].type !== 'expression_statement') return undefined;
  const parts = stmts[0].namedChildren.filter((c) => c.type !== 'comment');
  if (parts.length !== 1) return -2;
  return /assignment/.test(parts[0].type) ? undefined : precedence(parts[0]);
}

/** Text placed where at least precedence `need` is required, parenthesized when it binds looser. */
export function grouped(text: string, need: number | undefined): string {
  if (need === undefined) return text;
  const p = textPrecedence(text);
  return p !== undefined && p < need ? `(${text})` : text;
}

/** `then if cond else other` written in place of node `at`: each operand parenthesized where it
 *  binds looser than its place in the conditional, and the whole where `at`'s place binds tighter
 *  than a conditional does (the function of a call: `(f2 if c else f)(x)`). */
export function conditionalAt(at: SyntaxNode, then: string, cond: string, other: string): string {
  return groupedAt(at, `${grouped(then, CONDITIONAL + 1)} if ${grouped(cond, CONDITIONAL + 1)} else ${grouped(other, CONDITIONAL)}`);
}

/** Text written in place of node `at`, parenthesized where it binds looser than that place. */
export function groupedAt(at: SyntaxNode, text: string): string {
  return grouped(text, required(at));
}
