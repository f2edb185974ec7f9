// Constraints of the gated-activation rules: the gate and the up values are the two halves of
// one projection's output, split by `chunk(2, dim=-1)`.
import { constIs, line, opOf, type ConstraintSpec } from './spec.js';

const isLinear = (type: string[] | undefined) => !!type?.some((t) => t === 'torch.nn.Linear' || t.endsWith('.Linear'));

export const GATED_CONSTRAINTS: ConstraintSpec[] = [
  {
    name: 'chunk_halves', args: ['line', 'line'], rules: ['gated_mlp_chunk'],
    doc: "The two lines take different results (0 and 1) of one `chunk(2, dim=-1)` (or of a dim not known statically, which the rule's guard checks): the gate and the up halves of one projection, in either order.",
    check(args, st, view) {
      const [g, u] = [opOf(args[0], st), opOf(args[1], st)];
      if (!g || !u) return undefined;
      if (g.callee !== 'getitem' || u.callee !== 'getitem' || g.args[0]?.k !== 'ssa' || u.args[0]?.k !== 'ssa' || g.args[0].id !== u.args[0].id) {
        return `the values at line ${line(g)} are not two results of one chunk`;
      }
      const chunk = view.defs.get(g.args[0].id);
      const kw = (k: string, i: number) => chunk?.kw.find(([n]) => n === k)?.[1] ?? chunk?.args[i];
      // a dim held in an attribute or argument is left to the rule's guard (`last_dim_at_run_time`)
      const dim = kw('dim', 2);
      if (chunk?.callee !== 'chunk' || !constIs(kw('chunks', 1), 2) || (dim?.k === 'const' ? dim.v !== -1 : !dim)) {
        return `the split at line ${line(g)} is not chunk(2, dim=-1)`;
      }
      const halves = [g.args[1], u.args[1]];
      const ok = (constIs(halves[0], 0) && constIs(halves[1], 1)) || (constIs(halves[0], 1) && constIs(halves[1], 0));
      return ok ? undefined : `the gate and up at line ${line(g)} are not the two halves of the chunk`;
    },
  },
  {
    name: 'no_down_projection', args: ['line'], rules: ['gated_mlp_act'],
    doc: "The product is not passed straight to a Linear: where it is, the whole block `down(act(gate(x)) * up(x))` is gated_mlp's site.",
    check(args, st, view) {
      const p = opOf(args[0], st);
      if (!p) return undefined;
      const down = (view.uses.get(p.id) ?? []).find((u) => u.k === 'op' && u.op.kind === 'module' && isLinear(u.op.type));
      return down?.k === 'op' ? `the product goes straight into ${down.op.callee} at line ${line(down.op)}: the gated MLP as a whole is gated_mlp's site` : undefined;
    },
  },
];
