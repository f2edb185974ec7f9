// Setup code as the matcher sees it (src/analysis/setup.ts): a view of each unit of a file's
// setup code, for the rules that look there (`scope setup`), and only in files where such a rule
// can begin a match.
import type { FileIR } from '../dsl/ir.js';
import { setupCode } from '../analysis/setup.js';
import { viewOf, type MethodView } from './method.js';
import type { Rule } from './rule-ir.js';

/** A callee alternative that names a canonical op (`softmax`, `add`), or a module a factory of
 *  that name builds, rather than a class or function of its own name. */
export const PLAIN_OP = /^[a-z_][a-z0-9_]*$/;

/** A view of setup code, with the qualified name an inlined call of it is known by. */
export interface SetupView { view: MethodView; qual: string }

/** For `rules` (those that look in setup code): the views of a file's setup code. */
export function setupViewsFor(rules: Rule[]): (file: FileIR) => SetupView[] {
  const words = spelledAnchors(rules);
  return (file) => setupCode(file, words).map((u) => {
    const view = viewOf(file, u.method, u.module);
    if (u.owner) view.owner = u.owner;
    return { view, qual: u.qual };
  });
}

/** The names one of which a file's text must spell for a match of these rules to begin in it,
 *  where every first line names classes or functions (`Adam|AdamW`): a call of one is spelled by
 *  that name, or by an import of it in the file. Code of another file that calls one is matched in
 *  that file, and only there can a rewrite change it. Undefined where a first line is an op (which
 *  an operator or a method spells) or a glob. */
function spelledAnchors(rules: Rule[]): string[] | undefined {
  const words = new Set<string>();
  for (const r of rules) {
    const first = r.pattern[0];
    for (const alt of [first.callees, ...(first.alts ?? []).map((a) => a.callees)].flat()) {
      if (PLAIN_OP.test(alt) || alt.includes('*')) return undefined;
      words.add(alt.slice(alt.lastIndexOf('.') + 1));
    }
  }
  return [...words];
}
