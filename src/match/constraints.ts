// The registry of `where` constraints: general ones, and those written for one family of
// library rules, which live beside each other in constraints/. The rule loader checks every
// constraint a rule names against this registry; the matcher runs the checks; `adopt rules
// show` and docs/rule-language.md list it.
import type { State } from './state.js';
import type { MethodView } from './method.js';
import type { Constraint, PatOp } from './rule-ir.js';
import { ACTIVATION_CONSTRAINTS } from './constraints/activation.js';
import { ATTENTION_CONSTRAINTS } from './constraints/attention.js';
import { GATED_CONSTRAINTS } from './constraints/gated.js';
import { GENERAL_CONSTRAINTS } from './constraints/general.js';
import { LM_HEAD_CONSTRAINTS } from './constraints/lm-head.js';
import { NORM_CONSTRAINTS } from './constraints/norm.js';
import { ROPE_CONSTRAINTS } from './constraints/rope.js';
import { checkContext, type ArgKind, type ConstraintSpec } from './constraints/spec.js';

export type { ArgKind, ConstraintSpec } from './constraints/spec.js';

export const CONSTRAINTS: ReadonlyMap<string, ConstraintSpec> = new Map(
  [...GENERAL_CONSTRAINTS, ...ATTENTION_CONSTRAINTS, ...ROPE_CONSTRAINTS, ...GATED_CONSTRAINTS, ...LM_HEAD_CONSTRAINTS, ...ACTIVATION_CONSTRAINTS, ...NORM_CONSTRAINTS].map((c) => [c.name, c]),
);

export function checkConstraint(c: Constraint, st: State, view: MethodView, pattern: readonly PatOp[]): string | undefined {
  return CONSTRAINTS.get(c.name)!.check(c.args, st, view, checkContext(pattern, st));
}

const KIND_WORDS: Record<ArgKind, string> = { line: 'a pattern line', meta: 'a $metavariable', value: 'a pattern line or $metavariable', const: 'a literal' };

/** How a constraint is written: `halves($value, $value, $value)`, `single_use(line, ...)`. */
export function constraintSignature(c: ConstraintSpec): string {
  const word = (k: ArgKind) => (k === 'line' ? 'line' : k === 'meta' ? '$meta' : k === 'value' ? 'line|$meta' : 'literal');
  return `${c.name}(${[...c.args.map(word), ...(c.variadic ? ['...'] : [])].join(', ')})`;
}

/** What is wrong with a rule's use of a constraint, given the names its pattern binds. */
export function constraintProblem(c: Constraint, lines: Set<string>, metas: Set<string>): string | undefined {
  const spec = CONSTRAINTS.get(c.name);
  if (!spec) return `unknown constraint '${c.name}' (known: ${[...CONSTRAINTS.keys()].join(', ')})`;
  const min = spec.args.length;
  if (c.args.length < min || (!spec.variadic && c.args.length > min)) {
    return `${c.name} takes ${spec.variadic ? `at least ${min}` : min} argument(s), not ${c.args.length}: ${constraintSignature(spec)}`;
  }
  for (const [i, a] of c.args.entries()) {
    const kind = spec.args[Math.min(i, spec.args.length - 1)];
    if (a.k === 'ref' && !lines.has(a.name)) return `'${a.name}' is not a pattern name`;
    if (a.k === 'meta' && !metas.has(a.name)) return `metavariable $${a.name} is not bound by the pattern`;
    const fits = kind === 'const' ? a.k === 'const' : kind === 'line' ? a.k === 'ref' : kind === 'meta' ? a.k === 'meta' : a.k === 'ref' || a.k === 'meta';
    if (!fits) return `argument ${i + 1} of ${c.name} must be ${KIND_WORDS[kind]}: ${constraintSignature(spec)}`;
  }
  return undefined;
}
