// Constraint of the LM-head + cross-entropy rule: the Linear projects onto a vocabulary.
import { attrOf } from '../method.js';
import { opOf, type ConstraintSpec } from './spec.js';

export const LM_HEAD_CONSTRAINTS: ConstraintSpec[] = [
  {
    name: 'vocab_projection', args: ['line'], rules: ['lm_head_ce'],
    doc: "A Linear projecting onto a vocabulary (an LM head), not onto a few class labels.",
    check(args, st, view) {
      const op = opOf(args[0], st);
      if (!op) return undefined;
      const ctor = attrOf(view, op)?.value;
      if (ctor?.k !== 'call') return `the constructor of ${op.callee} is not known statically`;
      const out = ctor.kw.find(([k]) => k === 'out_features')?.[1] ?? ctor.args[1];
      const text = out ? JSON.stringify(out) : '';
      return /vocab|n_?token|n_?vocab/i.test(text) ? undefined : `${op.callee} does not project onto a vocabulary (out_features ${out?.k === 'name' ? out.path : '?'})`;
    },
  },
];
