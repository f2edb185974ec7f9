"""Attention whose additive mask takes a gradient (T5's learned position bias) on the CPU."""
import pytest
import torch

import adopt_kernels as ak
from adopt_kernels import _dispatch
from checks import compare
from test_attention import eager_attention, qkv


@pytest.mark.parametrize("bias_batch", [1, 2])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_learned_bias_runs_the_blocked_kernel(bias_batch, is_causal, scale):
    # the blocked kernel's backward writes the scores' gradient for the bias, summed over the
    # batch where the bias broadcasts over it
    q, k, v = qkv(2, 3, 7, 7, 5, torch.float32)
    bias = torch.randn(bias_batch, 3, 7, 7)
    before = dict(_dispatch.CALLS)
    compare(
        lambda q, k, v, b: eager_attention(q, k, v, b, scale=scale, is_causal=is_causal),
        lambda q, k, v, b: ak.attention(q, k, v, b, scale=scale, is_causal=is_causal),
        [q, k, v, bias],
    )
    assert _dispatch.CALLS["flash_attention"] == before.get("flash_attention", 0) + 1
    assert _dispatch.CALLS["softmax"] == before.get("softmax", 0)
    # negative control: a bias gradient off by a little is caught
    with pytest.raises(AssertionError):
        compare(
            lambda q, k, v, b: eager_attention(q, k, v, b, scale=scale, is_causal=is_causal),
            lambda q, k, v, b: ak.attention(q, k, v, b * 1.001 - (b * 0.001).detach(), scale=scale, is_causal=is_causal),
            [q, k, v, bias],
        )
    assert not ak.attention_supported(q, k, v.unsqueeze(0))
    assert not ak.attention_supported(q, torch.randn(3, 2, 4, 6), v)


def test_a_layout_the_blocked_kernel_cannot_take_runs_the_compiled_softmax():
    # five dimensions (windows of heads): the scores in BLAS, the bias added in place, the
    # compiled softmax, and the bias's gradient from autograd's add
    q, k, v = (torch.randn(2, 2, 3, 7, 5) for _ in range(3))
    bias = torch.randn(1, 1, 3, 7, 7)
    before = dict(_dispatch.CALLS)
    compare(
        lambda q, k, v, b: eager_attention(q, k, v, b, scale=1.0),
        lambda q, k, v, b: ak.attention(q, k, v, b, scale=1.0),
        [q, k, v, bias],
    )
    assert _dispatch.CALLS["softmax"] == before.get("softmax", 0) + 1
    assert _dispatch.CALLS["flash_attention"] == before.get("flash_attention", 0)

