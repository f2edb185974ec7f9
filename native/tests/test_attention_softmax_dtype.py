"""``attention(..., softmax_dtype=X)`` on its reference fallbacks: the original's
``softmax(scores, dim=-1, dtype=X)`` precision is kept on every path, not only the eager one.

(Beside ``test_attention.py``, which is over the 600 lines a file may have.)"""

import pytest
import torch

import adopt_kernels as ak
from checks import compare

# (input dtype, the original's `softmax(..., dtype=X)`): float64 rounded to float32 for the softmax;
# bfloat16 scaled and masked in bfloat16, then a float32 or a bfloat16 softmax
CASES = [
    (torch.float64, torch.float32),
    (torch.bfloat16, torch.float32),
    (torch.bfloat16, torch.bfloat16),
]


def eager(q, k, v, scale, softmax_dtype, mask=None):
    """`softmax(q @ k^T * scale + mask, dim=-1, dtype=X).to(v.dtype) @ v`, as the original writes it."""
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores + mask
    return torch.matmul(torch.softmax(scores, dim=-1, dtype=softmax_dtype).to(v.dtype), v)


def inputs(dtype, lq=5, lk=6, d=8):
    return [torch.randn(2, 3, n, d, dtype=torch.float64).to(dtype) for n in (lq, lk, lk)]


@pytest.mark.parametrize("dtype,softmax_dtype", CASES)
def test_a_scale_of_the_scores_shape_keeps_the_softmax_dtype(dtype, softmax_dtype):
    # a tensor scale varying along the keys cannot be folded into q: the reference path, which
    # scales in the input's dtype and computes the softmax in the original's
    q, k, v = inputs(dtype)
    scale = (torch.rand(5, 6, dtype=torch.float64) + 0.5).to(dtype)
    compare(
        lambda q, k, v, s: eager(q, k, v, s, softmax_dtype),
        lambda q, k, v, s: ak.attention(q, k, v, scale=s, softmax_dtype=softmax_dtype),
        [q, k, v, scale],
        dtype=torch.float64,
        rtol=0,
        atol=0,
    )


@pytest.mark.parametrize("dtype,softmax_dtype", [c for c in CASES if c[0] == torch.bfloat16])
@pytest.mark.parametrize("with_mask", [False, True])
def test_switched_off_keeps_the_softmax_dtype(dtype, softmax_dtype, with_mask, monkeypatch):
    # ADOPT_DISABLE=attention: every call takes the last fallback. (float64 with a float32 softmax
    # leaves earlier, on the path for a softmax dtype other than the input's.)
    monkeypatch.setenv("ADOPT_DISABLE", "attention")
    q, k, v = inputs(dtype)
    mask = None
    if with_mask:
        keep = torch.rand(2, 1, 5, 6) > 0.3
        keep[..., 0] = True
        mask = torch.zeros(2, 1, 5, 6, dtype=dtype).masked_fill(~keep, torch.finfo(dtype).min)
    compare(
        lambda q, k, v: eager(q, k, v, 0.3, softmax_dtype, mask),
        lambda q, k, v: ak.attention(q, k, v, mask, scale=0.3, softmax_dtype=softmax_dtype),
        [q, k, v],
        dtype=torch.float64,
        rtol=0,
        atol=0,
    )
