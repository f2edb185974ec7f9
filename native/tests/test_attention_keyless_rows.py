"""A query row with no key left (a boolean mask all False there, or causal masking with more
queries than keys): eager code gives it NaN and, masking with where, passes it no gradient, so q
and k get finite gradients. The kernels' additive form carried the NaN into them; such calls take
the reference path when gradients are recorded, and every other call still the compiled kernel."""
import math

import pytest
import torch

import adopt_kernels as ak
from adopt_kernels import _dispatch


def eager(q, k, v, mask=None, is_causal=False):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        s = torch.where(mask, s, torch.tensor(-math.inf))
    if is_causal:
        keep = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool).tril(k.size(-2) - q.size(-2))
        s = torch.where(keep, s, torch.tensor(-math.inf))
    return torch.softmax(s, -1) @ v


def _grads(fn, qkv, **kw):
    leaves = [t.clone().requires_grad_() for t in qkv]
    fn(*leaves, **kw).nan_to_num(0.0).sum().backward()
    return [t.grad for t in leaves]


@pytest.fixture(autouse=True)
def _any_size(monkeypatch):
    monkeypatch.setenv("ADOPT_CPU_MIN_BYTES", "0")


g = torch.Generator().manual_seed(0)
Q, K, V = (torch.randn(2, 2, n, 16, generator=g) for n in (5, 7, 7))


@pytest.mark.parametrize("case", ["bool mask, one row all False", "causal, more queries than keys"])
def test_q_and_k_get_the_finite_gradients_eager_code_gives(case):
    if case.startswith("bool"):
        mask = torch.ones(2, 1, 5, 7, dtype=torch.bool)
        mask[1, :, 3] = False
        kw, qkv = {"mask": mask}, (Q, K, V)
    else:
        kw, qkv = {"is_causal": True}, (Q, K[..., :3, :], V[..., :3, :])
    got, want = _grads(ak.attention, qkv, **kw), _grads(eager, qkv, **kw)
    for name, a, b in zip("qk", got[:2], want[:2]):
        assert not a.isnan().any(), f"NaN in the gradient of {name}"
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_rows_that_all_keep_a_key_still_take_the_compiled_kernel():
    mask = torch.ones(2, 1, 5, 7, dtype=torch.bool)
    mask[1, :, 3, :4] = False
    before = _dispatch.CALLS["flash_attention"]
    got, want = _grads(ak.attention, (Q, K, V), mask=mask), _grads(eager, (Q, K, V), mask=mask)
    assert _dispatch.CALLS["flash_attention"] > before
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_a_minus_inf_fill_that_replaces_a_whole_row_gives_eagers_gradients_too():
    fill = torch.zeros(2, 1, 5, 7, dtype=torch.bool)
    fill[0, :, 2] = True  # masked_fill(fill, -inf): row 2 of the first sample sees no key

    def eager_filled(q, k, v):
        s = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(fill, -math.inf)
        return torch.softmax(s, -1) @ v

    got = _grads(lambda q, k, v: ak.attention(q, k, v, fill_mask=fill, fill_value=-math.inf), (Q, K, V))
    want = _grads(eager_filled, (Q, K, V))
    for name, a, b in zip("qk", got[:2], want[:2]):
        assert not a.isnan().any(), f"NaN in the gradient of {name}"
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
