// Whether a rule's guards and rewrite lines are Python once their placeholders are filled, checked
// without a match: every placeholder becomes a name (or nothing, or `, kw=name`, as the renderer
// would write it), with the `{?name:text}` parts both present and absent.
import { hasSyntaxErrors } from '../parse/python.js';
import type { Rule } from './rule-ir.js';

/** The template with its placeholders filled by stand-ins; `withOptional` keeps `{?name:text}`. */
export function standIn(tpl: string, withOptional: boolean): string {
  return tpl
    .replace(/\{\?[A-Za-z_]\w*:([^}]*)\}/g, (_m, text: string) => (withOptional ? text : ''))
    .replace(/\{,([A-Za-z_]\w*)=[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|![A-Za-z_]\w*)?\}/g, ', $1=_v')
    .replace(/\{,[A-Za-z_]\w*\.([A-Za-z_]\w*)\}/g, ', $1=_v')
    .replace(/\{[A-Za-z_]\w*\.absent\}/g, '')
    // a part appended to a call, empty when its line is absent (`...){v.reshaped_as|}`): a suffix
    .replace(/\)\{[A-Za-z_]\w*\.[A-Za-z_]\w*\|\}/g, ')._v')
    .replace(/\{[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?(?:\|[^}]*)?\}/g, '_v');
}

/** The guards and rewrite of a rule that would not be Python, as messages. */
export function templateProblems(rule: Rule): string[] {
  const rw = rule.rewrite;
  if (!rw) return [];
  const out: string[] = [];
  const hasOptional = [...rw.guards, ...rw.code].some((t) => t.includes('{?'));
  for (const withOptional of hasOptional ? [true, false] : [true]) {
    const variant = withOptional ? '' : " (with the optional parts '{?name:...}' left out)";
    for (const g of rw.guards) {
      if (hasSyntaxErrors(`if (${standIn(g, withOptional)}):\n    pass\n`)) out.push(`guard "${g}" is not a Python expression${variant}`);
    }
    const code = rw.code.map((c) => standIn(c, withOptional));
    // a callee rewrite's template is an expression too: the function called
    const expression = rw.kind === 'expr' || rw.kind === 'callee';
    const program = expression ? `_r = ${code.join(' ')}\n` : `${code.join('\n')}\n`;
    // quoted as written: the stand-ins are no names of the rule writer's
    if (hasSyntaxErrors(program)) out.push(`the rewrite ${expression ? 'expression' : 'statements'} would not be Python${variant}: ${rw.code.join(' / ')}`);
  }
  return [...new Set(out)];
}

/** The calls of registry kernels in a rule's rewrite that pass arguments the kernel does not take:
 *  an unknown keyword, or more positional arguments than it has parameters. */
export function kernelArgumentProblems(rule: Rule, signatures: Record<string, string[]>): string[] {
  const rw = rule.rewrite;
  if (!rw) return [];
  const out: string[] = [];
  const text = [...rw.guards, ...rw.code].map((t) => standIn(t, true)).join('\n');
  for (const m of text.matchAll(/_adopt\.([A-Za-z_]\w*)\(/g)) {
    const params = signatures[m[1]];
    if (!params) continue;
    const args = topLevelArgs(text, m.index! + m[0].length);
    const positional = args.filter((a) => !/^[A-Za-z_]\w*\s*=[^=]/.test(a) && !a.startsWith('*'));
    if (positional.length > params.length) out.push(`_adopt.${m[1]} takes ${params.length} argument(s) (${params.join(', ')}), the rewrite passes ${positional.length}`);
    for (const a of args) {
      const kw = /^([A-Za-z_]\w*)\s*=[^=]/.exec(a)?.[1];
      if (kw && !params.includes(kw)) out.push(`_adopt.${m[1]} has no parameter '${kw}' (it takes ${params.join(', ')})`);
    }
  }
  return [...new Set(out)];
}

/** The arguments of the call whose '(' ends just before `from`, split at top-level commas. */
function topLevelArgs(text: string, from: number): string[] {
  const args: string[] = [];
  let depth = 0, start = from, quote = '';
  for (let i = from; i < text.length; i++) {
    const c = text[i];
    if (quote) { if (c === quote && text[i - 1] !== '\\') quote = ''; continue; }
    if (c === '"' || c === "'") quote = c;
    else if ('([{'.includes(c)) depth++;
    else if (')]}'.includes(c) && depth > 0) depth--;
    else if ((c === ',' || c === ')') && depth === 0) {
      if (text.slice(start, i).trim()) args.push(text.slice(start, i).trim());
      if (c === ')') break;
      start = i + 1;
    }
  }
  return args;
}
