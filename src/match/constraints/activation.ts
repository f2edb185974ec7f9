// Constraints of the Linear + GELU rules: an activation chosen by configuration is GELU as shipped;
// a 1x1 convolution is a linear map over the channels.
import type { Expr } from '../../dsl/ir.js';
import { sameExpr } from '../../analysis/lower.js';
import { attrOf, usersOf } from '../method.js';
import { opOf, type ConstraintSpec } from './spec.js';

/** The configuration field an activation is looked up by: `ACT2FN[config.hidden_act]`,
 *  `get_activation(config.hidden_act)`. */
function chosenBy(value: Expr): string | undefined {
  const key = value.k === 'index' ? value.index : value.k === 'call' && value.args.length === 1 ? value.args[0] : undefined;
  return key?.k === 'name' ? key.path : undefined;
}

export const ACTIVATION_CONSTRAINTS: ConstraintSpec[] = [
  {
    name: 'gelu_by_default', args: ['line'], rules: ['linear_gelu', 'conv1d_gelu'],
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
  {
    name: 'not_gating', args: ['line', 'line'], rules: ['linear_gelu'],
    doc: "The activation's result is not multiplied by another projection of the Linear's input (`act(gate(x)) * up(x)`: a gated MLP, the gated_mlp rule's site).",
    check(args, st, view) {
      const a = opOf(args[0], st);
      const l = opOf(args[1], st);
      if (!a || !l || !l.args[0]) return undefined;
      for (const u of usersOf(view, a.id)) {
        if (u.kind !== 'op' || u.callee !== 'mul') continue;
        const other = u.args.find((e) => !(e.k === 'ssa' && e.id === a.id));
        const def = other?.k === 'ssa' ? view.defs.get(other.id) : undefined;
        if (def && def.kind === 'module' && def.id !== l.id && def.args[0] && sameExpr(def.args[0], l.args[0])) {
          return `the activation gates ${def.callee} of the same input at line ${u.span.from.line}: a gated MLP`;
        }
      }
      return undefined;
    },
  },
  {
    name: 'pointwise_conv', args: ['line'], rules: ['conv1x1_gelu'],
    doc: 'A Conv2d built with kernel_size 1 (stride 1, no padding, no groups): a linear map over the channels at each position.',
    check(args, st, view) {
      const op = opOf(args[0], st);
      const attr = op && attrOf(view, op);
      if (!attr || attr.value.k !== 'call') return `the constructor of ${op?.callee ?? 'the conv'} is not known statically`;
      const { args: pos, kw } = attr.value;
      const arg = (i: number, name: string) => kw.find(([k]) => k === name)?.[1] ?? (pos[i]?.k === 'star' ? undefined : pos[i]);
      const isConst = (e: Expr | undefined, v: number) => e?.k === 'const' && e.v === v;
      if (!isConst(arg(2, 'kernel_size'), 1)) return `${op!.callee} is not built with kernel_size=1`;
      for (const [i, name] of [[3, 'stride'], [4, 'padding'], [5, 'dilation'], [6, 'groups']] as const) {
        const e = arg(i, name);
        if (e && !isConst(e, name === 'padding' ? 0 : 1)) return `${op!.callee} is built with ${name}=${e.k === 'const' ? String(e.v) : 'a value not known statically'}`;
      }
      return undefined;
    },
  },
];
