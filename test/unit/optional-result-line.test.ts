// A rule whose last pattern line is optional: that line is the match's result (what `rewrite expr`
// replaces, what a `rewrite stmts` template assigns). One site where the code has it, counted once,
// and none where it does not (a near miss): before, one softmax + dropout was found twice (the
// second time less its dropout, found again when the dropout was banned to look for another site)
// and a softmax without dropout once, so `adopt rewrite` printed "3 site(s) found" for 1.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/pipeline/index.js';
import { tempProject } from '../helpers/ir.js';

const MODEL = `import torch
from torch import nn


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.1)

    def forward(self, s, v):
        p = torch.softmax(s, dim=-1)
        d = self.drop(p)
        return d @ v


class Plain(nn.Module):
    def forward(self, s, v):
        p = torch.softmax(s, dim=-1)
        return p @ v
`;

const rule = (kind: 'expr' | 'stmts') => `rule sm_drop
  title "softmax, then an optional dropout"
  match
    p = softmax($x, ...)
    d = dropout|Dropout(p, ...)?
  where
    last_dim(p)
  rewrite ${kind === 'expr' ? 'expr d' : 'stmts'}
    guard "_adopt is not None and _adopt.enabled('softmax')"
    "${kind === 'expr' ? '' : '{d} = '}_adopt.softmax({x}, dim={p.dim})"
  kernel cpu native "adopt_kernels.softmax"
  example "m.py" "m.py"
`;

describe('an optional last pattern line', () => {
  for (const kind of ['expr', 'stmts'] as const) {
    it(`rewrite ${kind}: one site where the line is present, none where it is absent`, () => {
      const dir = tempProject({ 'm.py': MODEL, 'r.rule': rule(kind) });
      const run = runRewrite([join(dir, 'm.py')], { rules: join(dir, 'r.rule'), builtinRules: false, whyNot: true });
      expect(run.sites.map((s) => `${s.owner}:${s.lines.join('-')}:${s.decision}`)).toEqual(['Head:11-12:rewritten']);
      expect(run.nearMisses).toEqual([expect.objectContaining({ owner: 'Plain', line: 18, reason: expect.stringMatching(/^no 'd = dropout\|Dropout\(\.\.\.\)' follows in the dataflow: the pattern's last line is optional, but it is the match's result/) })]);
    });
  }
});
