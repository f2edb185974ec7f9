"""`causal_lm_loss`, the run-time check of a loss through `self.loss_function`, and the
`linear_cross_entropy` settings it gives (`loss_dtype`, `divide_by`).

The checks against transformers' own helpers need transformers 4.46 or later (its
`transformers.loss.loss_utils`): under the transformers 4.35 of the test environment they are
skipped, and test/lm-loss-function.test.ts runs them in the torch-2 environment, which has
transformers 5.x (`loss_helpers_real.check_real_helpers`)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import adopt_kernels as ak
from adopt_kernels import _dispatch
from checks import assert_close, compare
from loss_helpers_real import HIDDEN, VOCAB, labels_for



def look_alike_causal_lm_loss(logits, labels, vocab_size, num_items_in_batch=None, ignore_index=-100, shift_labels=None, **kwargs):
    """What transformers' ForCausalLMLoss computes, as the model code's author might write it:
    the check must still refuse it, since it is not transformers' own function."""
    labels = F.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    reduction = "sum" if num_items_in_batch is not None else "mean"
    loss = F.cross_entropy(logits.float().view(-1, vocab_size), labels.reshape(-1), ignore_index=ignore_index, reduction=reduction)
    return loss if num_items_in_batch is None else loss / num_items_in_batch


look_alike_causal_lm_loss.__name__ = "ForCausalLMLoss"


def masked_lm_loss(logits, labels, vocab_size, num_items_in_batch=None, ignore_index=-100, **kwargs):
    reduction = "sum" if num_items_in_batch is not None else "mean"
    loss = F.cross_entropy(logits.float().view(-1, vocab_size), labels.reshape(-1), ignore_index=ignore_index, reduction=reduction)
    return loss if num_items_in_batch is None else loss / num_items_in_batch


def test_a_look_alike_helper_is_refused():
    head = nn.Linear(HIDDEN, VOCAB, bias=False)
    assert ak.causal_lm_loss(look_alike_causal_lm_loss, head, VOCAB, {}) is None
    assert ak.causal_lm_loss(lambda **kw: None, head, VOCAB, {}) is None


def helper_and_settings(shift, num_items):
    helper = look_alike_causal_lm_loss if shift else masked_lm_loss
    kwargs = {"ignore_index": 3, "num_items_in_batch": num_items}
    settings = dict(shift=shift, ignore_index=3, reduction="mean" if num_items is None else "sum", loss_dtype=torch.float32)
    if num_items is not None:
        settings["divide_by"] = num_items
    return helper, kwargs, settings


SETTINGS = [(True, None), (True, 7), (False, None), (False, torch.tensor(5))]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shift,num_items", SETTINGS)
def test_the_settings_compute_what_the_helper_computes(dtype, shift, num_items):
    """`loss_dtype` takes the loss over float32 logits while the returned logits keep the
    head's dtype; `divide_by` divides the summed loss (the compiled kernel in float32, the
    eager code in float64): loss, logits and gradients match."""
    torch.manual_seed(0)
    hidden = torch.randn(2, 7, HIDDEN).to(dtype)
    head = nn.Linear(HIDDEN, VOCAB).to(dtype)
    labels = labels_for((2, 7), ignore_index=3)
    helper, kwargs, settings = helper_and_settings(shift, num_items)

    def original(h, lm_head):
        logits = lm_head(h)
        return helper(logits=logits, labels=labels, vocab_size=VOCAB, **kwargs), logits

    def fused(h, lm_head):
        return ak.linear_cross_entropy(h, lm_head, labels, return_logits=True, **settings)

    before = _dispatch.CALLS["linear_cross_entropy"]
    (ref_loss, ref_logits), (loss, logits) = compare(original, fused, [hidden], [head], dtype=dtype)
    # float32 through the compiled kernel where it builds; float64 through the eager code
    assert (_dispatch.CALLS["linear_cross_entropy"] > before) == (dtype == torch.float32)
    assert loss.dtype == ref_loss.dtype == torch.float32
    assert logits.dtype == ref_logits.dtype == dtype


@pytest.mark.parametrize("shift,num_items", SETTINGS)
def test_bfloat16_logits_stay_bfloat16_and_the_loss_is_float32(shift, num_items):
    torch.manual_seed(0)
    hidden = torch.randn(2, 7, HIDDEN).bfloat16()
    head = nn.Linear(HIDDEN, VOCAB).bfloat16()
    labels = labels_for((2, 7), ignore_index=3)
    helper, kwargs, settings = helper_and_settings(shift, num_items)
    with torch.no_grad():
        logits = head(hidden)
        want = helper(logits=logits, labels=labels, vocab_size=VOCAB, **kwargs)
        loss, got_logits = ak.linear_cross_entropy(hidden, head, labels, return_logits=True, **settings)
    assert (loss.dtype, got_logits.dtype) == (torch.float32, torch.bfloat16)
    assert_close(loss, want, rtol=1e-2, atol=1e-2)
    assert_close(got_logits.float(), logits.float(), rtol=1e-2, atol=1e-2)


def test_divide_by_needs_a_summed_loss():
    head = nn.Linear(HIDDEN, VOCAB)
    with pytest.raises(ValueError, match="divide_by"):
        ak.linear_cross_entropy(torch.randn(2, 3, HIDDEN), head, labels_for((2, 3)), divide_by=4)


def test_transformers_helpers():
    pytest.importorskip("transformers.loss.loss_utils", reason="transformers before 4.46 has no loss helpers; test/lm-loss-function.test.ts checks them in torch 2")
    from loss_helpers_real import check_real_helpers

    check_real_helpers()


def test_without_transformers_loss_helpers_nothing_is_taken():
    """transformers 4.35 has no `transformers.loss`: no function is taken for one of its helpers."""
    import importlib.util
    import sys

    if importlib.util.find_spec("transformers") and importlib.util.find_spec("transformers.loss"):
        pytest.skip("this transformers has loss helpers")
    assert "transformers.loss.loss_utils" not in sys.modules
    assert ak.causal_lm_loss(look_alike_causal_lm_loss, nn.Linear(HIDDEN, VOCAB), VOCAB, {}) is None
