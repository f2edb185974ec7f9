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
    const program = rw.kind === 'expr' ? `_r = ${code.join(' ')}\n` : `${code.join('\n')}\n`;
    if (hasSyntaxErrors(program)) out.push(`the rewrite ${rw.kind === 'expr' ? 'expression' : 'statements'} would not be Python${variant}: ${code.join(' / ')}`);
  }
  return [...new Set(out)];
}
