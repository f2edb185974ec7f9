// Rules as plain data (what grammar/rules.ohm parses into), and the error every rule problem is
// reported with: rule-file:line:col and a message in the rule writer's words.
import { AdoptError, type Diagnostic } from '../diag.js';
import type { Const } from '../dsl/ir.js';

export type PatVal =
  | { k: 'meta'; name: string }
  | { k: 'any' }
  | { k: 'const'; v: Const }
  | { k: 'name'; path: string }
  | { k: 'ref'; name: string }
  /** `(a, b)`: a tuple or list of exactly these items (`cat((n, x1), dim=-1)`). */
  | { k: 'tuple'; items: PatVal[] };

export interface PatArg { kw?: string; rest?: boolean; val?: PatVal }

export interface PatOp {
  name: string;
  /** Alternatives: a canonical op (`softmax`), a module class (`Dropout`, `torch.nn.Linear`), a
   *  table lookup (`ACT2FN[*]`), or a resolved function (`torch.optim.AdamW`). */
  callees: string[];
  /** With `Type(ctor...)(call...)`: constraints on the constructor in `__init__`. */
  ctor?: PatArg[];
  args: PatArg[];
  /** Other forms of the same line (`matmul(p, $v) or matmul($v, p)`), tried after the first;
   *  which one matched is `State.forms`. */
  alts?: { callees: string[]; args: PatArg[] }[];
  optional: boolean;
  line: number;
  col: number;
}

export interface Constraint { name: string; args: PatVal[]; line: number; col: number }

/** A line the grammar accepts only to explain why it is refused (`import`, `bind`). */
export interface RefusedLine { kind: string; line: number }

export interface Rewrite {
  /** `expr`: the template replaces the target line's expression; `callee`: it replaces only the
   *  function the target line's call calls, its arguments staying as written; `stmts`: the
   *  template replaces the matched statements. */
  kind: 'expr' | 'callee' | 'stmts' | 'init';
  target?: string;
  /** With `rewrite callee NAME`: the column of NAME, where a problem with the target is reported. */
  targetCol?: number;
  guards: string[];
  code: string[];
  /** Metavariables whose value None makes the kernel call what it is with the lines binding
   *  them absent: `if x is not None: <those lines>` then needs no guard. */
  noneAbsent: string[];
  refused: RefusedLine[];
  line: number;
}

export interface Kernel { target: string; library: string; callee: string; requires: string[]; line: number }
export interface Example { before: string; after: string; shapes: number[]; dtype: string; atol: number; rtol: number; model?: string; line: number }

/** Where a rule looks for sites. `model`: the code a model runs, what `adopt explain` prints
 *  (nn.Module methods but `__init__`, functions, a callable object's `__call__`). `setup`: the
 *  code that builds a model and its training (an nn.Module's `__init__`, the methods of other
 *  classes, functions defined inside functions): an optimizer is built there, while a softmax or
 *  a Linear there is a layer being built, not a computation to fuse. */
export type Scope = 'model' | 'setup';

export interface Rule {
  name: string;
  file: string;
  line: number;
  title: string;
  priority: number;
  /** Where the rule looks (`scope model, setup`); without the item, model code only. */
  scope?: Scope[];
  /** Adopter's benchmark rule this one is scored against, if any. */
  bench?: string;
  /** For a rule without a rewrite: why its sites are listed and not rewritten, in a user's words. */
  detect?: string;
  pattern: PatOp[];
  where: Constraint[];
  rewrite?: Rewrite;
  kernels: Kernel[];
  tune: [string, Const[]][];
  examples: Example[];
}

/** Whether a rule looks for sites in code of this scope. */
export function looksIn(rule: Rule, scope: Scope): boolean {
  return (rule.scope ?? ['model']).includes(scope);
}

export class RuleError extends AdoptError {}

export function ruleDiagnostic(file: string, line: number, col: number, message: string): Diagnostic {
  return { severity: 'error', code: 'rule', file, line, col, message };
}

export function fail(file: string, line: number, col: number, message: string): never {
  throw new RuleError(`${file}:${line}:${col}: error: ${message}`, [ruleDiagnostic(file, line, col, message)]);
}
