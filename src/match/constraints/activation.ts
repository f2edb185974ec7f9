// Constraint of the Linear + GELU rule: an activation chosen by configuration is GELU as shipped.
import type { Expr } from '../../dsl/ir.js';
import { attrOf } from '../method.js';
import { opOf, type ConstraintSpec } from './spec.js';

/** The configuration field an activation is looked up by: `ACT2FN[config.hidden_act]`,
 *  `get_activation(config.hidden_act)`. */
function chosenBy(value: Expr): string | undefined {
  const key = value.k === 'index' ? value.index : value.k === 'call' && value.args.length === 1 ? value.args[0] : undefined;
  return key?.k === 'name' ? key.path : undefined;
}

export const ACTIVATION_CONSTRAINTS: ConstraintSpec[] = [
  {
    name: 'gelu_by_default', args: ['line'], rules: ['linear_gelu'],
    doc: "An activation looked up from the configuration (`ACT2FN[config.hidden_act]`) is a GELU by the configuration's default, where the default is known (the guard still checks at run time).",
    check(args, st, view) {
      const op = opOf(args[0], st);
      if (!op || op.kind !== 'module') return undefined;
      const attr = attrOf(view, op);
      const field = attr && chosenBy(attr.value);
      const dflt = field ? attr!.defaults?.find(([k]) => k === field)?.[1] : undefined;
      if (dflt?.k !== 'const' || typeof dflt.v !== 'string' || /gelu/i.test(dflt.v)) return undefined;
      return `the activation is ${field}, ${JSON.stringify(dflt.v)} by default: not a GELU as the model is configured`;
    },
  },
];
