// A method a subclass inherits runs with the subclass's submodules: a site found in the base's
// method stands for every class that runs it, so each must build what the site reads alike.
import type { ModuleIR, Op, Program } from '../dsl/ir.js';
import { sameExpr } from '../analysis/lower.js';

/** Why a site of a method some subclass inherits is not one for that subclass: a submodule the
 *  site calls that the subclass's __init__ builds in another way (the rewrite may have read its
 *  settings from the base's). */
export function subclassBuildsOtherwise(program: Program, base: ModuleIR | undefined, method: string, ops: (Op | null)[]): string | undefined {
  if (!base) return undefined;
  const names = new Set<string>();
  for (const op of ops) {
    const m = op?.kind === 'module' ? /^self\.([A-Za-z_]\w*)/.exec(op.callee) : null;
    if (m) names.add(m[1]);
  }
  if (!names.size) return undefined;
  const defsOf = (m: ModuleIR, name: string) => m.attrs.filter((a) => a.name === name).map((a) => a.value);
  for (const f of program.files) {
    for (const sub of f.modules) {
      if (sub === base || !sub.inherited.some(([meth, from]) => meth === method && from === base.qualname)) continue;
      for (const name of names) {
        const [a, b] = [defsOf(base, name), defsOf(sub, name)];
        if (a.length !== b.length || a.some((e, i) => !sameExpr(e, b[i]))) {
          return `${sub.qualname.split('.').pop()} (a subclass that inherits ${method}) builds self.${name} otherwise (line ${sub.attrs.find((x) => x.name === name)?.span.from.line ?? '?'}); one rewrite of ${method} cannot serve both`;
        }
      }
    }
  }
  return undefined;
}
