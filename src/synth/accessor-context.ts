// What a template accessor may ask of the site it is read at: its own module, so that accessor
// implementations in other files need not import the registry that lists them.
import type { Expr, Op } from '../dsl/ir.js';
import type { SyntaxNode } from '../parse/python.js';

/** What an accessor may ask of the site it is read at. */
export interface AccessorContext {
  /** An IR value written as source text where the rewrite runs; undefined when it cannot be. */
  expr(e: Expr): string | undefined;
  /** Whether an argument is the data the matched code passes along (a matched op's value, or
   *  the phi that carries it through a branch), not a setting. */
  isMatchedValue(e: Expr): boolean;
  /** The syntax node at an op's span (the call as written, where it is one). */
  nodeAt(op: Op): SyntaxNode | undefined;
  /** For a submodule call: the constructor call that built the submodule in `__init__`. */
  constructorOf(op: Op): Expr | undefined;
  /** The op computing a value, and the inputs of a value merged from branches. */
  defOf(e: Expr): Op | undefined;
  phiInputs(e: Expr): Expr[] | undefined;
  /** The ops of the method the site is in, and the variable an op's result is assigned to. */
  ops(): Op[];
  nameOf(op: Op): string | undefined;
  /** Whether the name `self` is bound where the rewrite runs (a parameter of the enclosing
   *  function or of one around it): not in a module-level function. */
  selfInScope(): boolean;
  /** Refuses the site with a reason (the accessor then reads as undefined). */
  refuse(why: string): undefined;
}
