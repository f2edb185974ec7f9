// The registry of `where` constraints: general ones, and those written for one family of
// library rules, which live beside each other in constraints/. The rule loader checks every
// constraint a rule names against this registry; the matcher runs the checks; `adopt rules
// show` and docs/rule-language.md list it.
import type { State } from './state.js';
import type { MethodView } from './method.js';
import type { Op } from '../dsl/ir.js';
import type { Constraint, PatOp, PatVal, Rule } from './rule-ir.js';
import { patternText } from './why-not.js';
import { ACTIVATION_CONSTRAINTS } from './constraints/activation.js';
import { ATTENTION_CONSTRAINTS } from './constraints/attention.js';
import { GATED_CONSTRAINTS } from './constraints/gated.js';
import { GENERAL_CONSTRAINTS } from './constraints/general.js';
import { LM_HEAD_CONSTRAINTS } from './constraints/lm-head.js';
import { NORM_CONSTRAINTS } from './constraints/norm.js';
import { ROPE_CONSTRAINTS } from './constraints/rope.js';
import { line, type ArgKind, type ConstraintSpec } from './constraints/spec.js';

export type { ArgKind, ConstraintSpec } from './constraints/spec.js';

export const CONSTRAINTS: ReadonlyMap<string, ConstraintSpec> = new Map(
  [...GENERAL_CONSTRAINTS, ...ATTENTION_CONSTRAINTS, ...ROPE_CONSTRAINTS, ...GATED_CONSTRAINTS, ...LM_HEAD_CONSTRAINTS, ...ACTIVATION_CONSTRAINTS, ...NORM_CONSTRAINTS].map((c) => [c.name, c]),
);

export function checkConstraint(c: Constraint, st: State, view: MethodView): string | undefined {
  const failure = CONSTRAINTS.get(c.name)!.check(c.args, st, view);
  return failure && (reworded(c, failure, st) ?? failure);
}

// A constraint names pattern lines by their names in the rule (`ab`, `av`), which mean nothing to
// someone reading why their model was not rewritten. The reason is reworded to say what each line
// is: the op it matched and where, or, for a line the match lacks, the line as the rule writes it.
// The checks see only a constraint's arguments, so each rule's pattern is noted here when the
// rule is loaded.
const patterns = new WeakMap<Constraint, readonly PatOp[]>();

/** Lets the reasons `rule`'s constraints give say what the pattern lines they name are. */
export function notePattern(rule: Rule): void {
  for (const c of rule.where) patterns.set(c, rule.pattern);
}

/** A failure reason in which each pattern line the constraint names is said as what it is. */
function reworded(c: Constraint, failure: string, st: State): string | undefined {
  const pattern = patterns.get(c);
  if (!pattern) return undefined;
  const named = (a: PatVal) => (a.k === 'ref' ? pattern.find((p) => p.name === a.name) : undefined);
  const opOf = (a: PatVal) => (a.k === 'ref' ? st.ops.get(a.name) ?? undefined : undefined);
  const text = (a: PatVal) => { const p = named(a); return p ? `'${patternText(p)}'` : `'${a.k === 'ref' ? a.name : '?'}'`; };
  // a line the match has: the op, its place, and the line it matched
  const found = (a: PatVal, op: Op) => `${op.callee} at line ${line(op)} (pattern line ${text(a)})`;
  const refs = c.args.filter((a) => a.k === 'ref');
  const present = refs.flatMap((a) => { const op = opOf(a); return op ? [found(a, op)] : []; });
  const absent = refs.filter((a) => !opOf(a)).map(text);
  const list = (xs: string[], word: string) => (xs.length < 3 ? xs.join(` ${word} `) : `${xs.slice(0, -1).join(', ')} ${word} ${xs[xs.length - 1]}`);
  switch (c.name) {
    case 'together':
      return `${list(present, 'and')} ${present.length > 1 ? 'are' : 'is'} here without ${list(absent, 'or')}: the rule takes these optional lines together or not at all`;
    case 'needs': {
      const [first, ...rest] = c.args;
      const op = opOf(first);
      const missing = rest.find((a) => !opOf(a));
      return op && missing ? `${found(first, op)} is here without ${text(missing)}, which it needs` : undefined;
    }
    case 'apart':
      return `${list(present, 'and')} are ${present.length > 2 ? 'all' : 'both'} here: the rule takes at most one of them`;
    case 'single_use':
    case 'not_escaping':
      // `'name' at line N`: the line whose value is used elsewhere
      return failure.replace(/'([A-Za-z_]\w*)' at line (\S+)/, (all, name: string, at: string) => {
        const a = refs.find((r) => r.k === 'ref' && r.name === name);
        const op = a && opOf(a);
        return a && op ? `${op.callee} at line ${at} (pattern line ${text(a)})` : all;
      });
    case 'transposed_by': {
      // `o takes its transposed form ...`, `pt at line N transposes ..., but o does not ...`
      const said = (name: string) => {
        const a = refs.find((r) => r.k === 'ref' && r.name === name);
        const op = a && opOf(a);
        return a && op ? found(a, op) : name;
      };
      return failure
        .replace(/^([A-Za-z_]\w*) at line \S+/, (_all, name: string) => said(name))
        .replace(/^([A-Za-z_]\w*) takes/, (_all, name: string) => `${said(name)} takes`)
        .replace(/, but ([A-Za-z_]\w*) does/, (_all, name: string) => `, but ${said(name)} does`);
    }
    default:
      return undefined;
  }
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
