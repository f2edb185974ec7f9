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
def test_learned_bias_runs_the_compiled_softmax(bias_batch, is_causal, scale):
    # the blocked kernel gives no mask gradient: a bias that needs one is added to the BLAS
    # product before the compiled softmax, and its gradient is summed over the batch
    q, k, v = qkv(2, 3, 7, 7, 5, torch.float32)
    bias = torch.randn(bias_batch, 3, 7, 7)
    before = _dispatch.CALLS["softmax"]
    compare(
        lambda q, k, v, b: eager_attention(q, k, v, b, scale=scale, is_causal=is_causal),
        lambda q, k, v, b: ak.attention(q, k, v, b, scale=scale, is_causal=is_causal),
        [q, k, v, bias],
    )
    assert _dispatch.CALLS["softmax"] == before + 1
    # negative control: a bias gradient off by a little is caught
    with pytest.raises(AssertionError):
        compare(
            lambda q, k, v, b: eager_attention(q, k, v, b, scale=scale, is_causal=is_causal),
            lambda q, k, v, b: ak.attention(q, k, v, b * 1.001 - (b * 0.001).detach(), scale=scale, is_causal=is_causal),
            [q, k, v, bias],
        )
