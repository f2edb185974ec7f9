// A value a helper of another file returns through branches (current transformers'
// `hidden_states = slice_logits_to_keep(hidden_states, logits_to_keep)`, from modeling_utils)
// is named at the call in this file: the head's input is the variable the call's statement
// assigns, so the rewrite can write it.
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/pipeline/index.js';
import { tempProject } from '../helpers/ir.js';

const UTILS = `import torch


def keep_last(hidden_states, logits_to_keep):
    if isinstance(logits_to_keep, torch.Tensor):
        return hidden_states[:, logits_to_keep]
    return hidden_states[:, slice(-logits_to_keep, None), :]
`;

const MODEL = `import torch.nn.functional as F
from torch import nn

from .utils import keep_last


class HeadLM(nn.Module):
    def __init__(self, vocab_size=40, hidden_size=16):
        super().__init__()
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)

    def forward(self, hidden_states, labels, logits_to_keep=0):
        hidden_states = keep_last(hidden_states, logits_to_keep)
        logits = self.lm_head(hidden_states)
        loss = F.cross_entropy(logits[..., :-1, :].reshape(-1, logits.size(-1)), labels[..., 1:].reshape(-1))
        return loss, logits
`;

describe('a value returned through branches by a helper of another file', () => {
  it('is written as the variable its call assigns', () => {
    const dir = tempProject({ 'lm/__init__.py': '', 'lm/utils.py': UTILS, 'lm/model.py': MODEL });
    const run = runRewrite([`${dir}/lm/model.py`], { rules: 'lm_head_ce' });
    const [site] = run.sites.filter((s) => s.rule === 'lm_head_ce');
    expect(site?.decision, site?.reason).toBe('rewritten');
    expect(run.files[0].rewritten).toMatch(/_adopt\.linear_cross_entropy\(\s*hidden_states, self\.lm_head, labels, shift=True, return_logits=True/);
  });
});
