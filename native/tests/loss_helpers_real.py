"""Checks of `causal_lm_loss` against transformers' own loss helpers (transformers 4.46 and
later). Kept apart from the pytest module so that the torch-2 environment, which has no pytest,
can run them: test/lm-loss-function.test.ts does, and native/tests/test_loss_helpers.py where
this transformers has the helpers."""
import torch
from torch import nn

import adopt_kernels as ak
from checks import compare

VOCAB, HIDDEN = 40, 16


def labels_for(shape, ignore_index=-100, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, VOCAB, shape, generator=g)
    labels[torch.rand(shape, generator=g) < 0.2] = ignore_index
    return labels


def check_real_helpers():
    """Against transformers' own helpers: taken by identity, with the settings they compute;
    refused for keywords that change them, a head of another size, or another helper."""
    from transformers.loss.loss_utils import LOSS_MAPPING, ForCausalLMLoss, ForMaskedLMLoss

    head = nn.Linear(HIDDEN, VOCAB, bias=False)
    assert ak.causal_lm_loss(ForCausalLMLoss, head, VOCAB, {"output_attentions": False}) == dict(shift=True, ignore_index=-100, reduction="mean", loss_dtype=torch.float32)
    assert ak.causal_lm_loss(ForMaskedLMLoss, head, VOCAB, {"shift_labels": torch.zeros(2)})["shift"] is False
    assert ak.causal_lm_loss(ForCausalLMLoss, head, VOCAB, {"num_items_in_batch": 9})["divide_by"] == 9
    for refused in ({"shift_labels": torch.zeros(2)}, {"labels": None}, {"ignore_index": torch.tensor(3)}):
        assert ak.causal_lm_loss(ForCausalLMLoss, head, VOCAB, refused) is None, refused
    assert ak.causal_lm_loss(ForCausalLMLoss, head, VOCAB + 1, {}) is None
    assert ak.causal_lm_loss(LOSS_MAPPING["ForTokenClassification"], head, VOCAB, {}) is None
    assert ak.causal_lm_loss(nn.Sequential(head), head, VOCAB, {}) is None
    assert ak.causal_lm_loss(ForCausalLMLoss, nn.Sequential(head), VOCAB, {}) is None
    for helper in (ForCausalLMLoss, ForMaskedLMLoss):
        for kwargs in ({}, {"num_items_in_batch": torch.tensor(6), "ignore_index": 3}):
            for dtype in (torch.float32, torch.bfloat16, torch.float64):
                torch.manual_seed(1)
                hidden = torch.randn(2, 7, HIDDEN).to(dtype)
                lm_head = nn.Linear(HIDDEN, VOCAB).to(dtype)
                labels = labels_for((2, 7), ignore_index=kwargs.get("ignore_index", -100))
                settings = ak.causal_lm_loss(helper, lm_head, VOCAB, kwargs)

                def original(h, m):
                    logits = m(h)
                    return helper(logits=logits, labels=labels, vocab_size=VOCAB, **kwargs), logits

                def fused(h, m):
                    return ak.linear_cross_entropy(h, m, labels, return_logits=True, **settings)

                tol = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else {}
                (ref, ref_logits), (loss, logits) = compare(original, fused, [hidden], [lm_head], dtype=torch.float32 if dtype == torch.bfloat16 else dtype, **tol)
                assert (loss.dtype, logits.dtype) == (ref.dtype, ref_logits.dtype) == (torch.float32, dtype)


if __name__ == "__main__":
    check_real_helpers()
    print("transformers loss helpers: ok")
