// What a match carries while it grows: the values and ops bound so far (the matcher extends it,
// the constraints read it).
import type { Expr, Op } from '../dsl/ir.js';

export interface State {
  vals: Map<string, Expr>;
  ops: Map<string, Op | null>;
  metas: Map<string, Expr>;
  used: Set<number>;
  /** Pattern lines matched by one of their `or` forms: name → form index (1 is the first `or`). */
  forms: Map<string, number>;
}
