// The rule loader's check of a rewrite's template accessors (`{name.part}`) against the synthesis
// stage's registry: an accessor that does not exist is an error in the rule file, not a site
// that fails to rewrite later.
import { accessorProblem } from '../synth/accessors.js';

const PLACEHOLDER_PART = /\{,?(?:[A-Za-z_]\w*=)?([A-Za-z_]\w*)\.([A-Za-z_]\w*)(?:\|[^}]*)?\}/g;

/** Each problem with the accessors a template uses, as `{name.part}: why`. `isOp` says whether a
 *  name is a pattern line (else it is a metavariable or a bind). */
export function templateAccessorProblems(template: string, isOp: (name: string) => boolean): string[] {
  const out: string[] = [];
  for (const m of template.matchAll(PLACEHOLDER_PART)) {
    const why = accessorProblem(m[2], !isOp(m[1]));
    if (why) out.push(`{${m[1]}.${m[2]}}: ${why}`);
  }
  return out;
}
