"""adopt_kernels.softmax (the function rewritten code calls) against softmax written out in
float64 from its definition, exp(x - max) / sum, with the analytic gradient y * (g - sum(g * y)):
never against torch.softmax, which the function may itself call. A negative control shows the
same check fails for a softmax over the wrong dimension."""
import pytest
import torch

import adopt_kernels as ak
from adopt_kernels import _build, _dispatch
from checks import TOLERANCES


def definition(x, dim):
    x = x.double()
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)


def definition_grad(y, g, dim):
    y, g = y.double(), g.double()
    return y * (g - (g * y).sum(dim=dim, keepdim=True))


def check(fn, x, dim):
    """fn's output and input gradient against the definition, at the dtype's tolerance."""
    leaf = x.detach().clone().requires_grad_(True)
    out = fn(leaf)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(out.dtype)
    out.backward(g)
    y = definition(x, dim)
    tol = TOLERANCES[x.dtype]
    torch.testing.assert_close(out.double(), y, **tol)
    torch.testing.assert_close(leaf.grad.double(), definition_grad(y, g, dim), **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 5, 7), (1, 1, 13), (2, 3, 4, 123)])
@pytest.mark.parametrize("dim", [-1, 0, 1, -2])
def test_matches_the_definition(dtype, shape, dim):
    x = torch.randn(shape, dtype=dtype) * 3
    check(lambda t: ak.softmax(t, dim=dim), x, dim)


def test_a_softmax_over_the_wrong_dimension_fails_the_same_check():
    x = torch.randn(3, 5, 7) * 3
    with pytest.raises(AssertionError):
        check(lambda t: ak.softmax(t, dim=-2), x, -1)


def test_the_last_dimension_in_float32_runs_the_compiled_kernel():
    if _build.compiler_identity(_build.compiler()) is None:
        pytest.skip("no C++ compiler: the reference path runs, and says so")
    before = _dispatch.CALLS["softmax"]
    check(lambda t: ak.softmax(t, dim=-1), torch.randn(4, 9, 123) * 3, -1)
    assert _dispatch.CALLS["softmax"] > before


def test_default_dim_is_last():
    x = torch.randn(3, 5, 7)
    check(lambda t: ak.softmax(t), x, -1)


def test_dtype_argument_upcasts():
    x = torch.randn(3, 5, 7, dtype=torch.float32)
    out = ak.softmax(x, dim=2, dtype=torch.float64)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, definition(x, 2), **TOLERANCES[torch.float64])


def test_bfloat16_input_float32_softmax():
    x = torch.randn(3, 5, 7).to(torch.bfloat16)
    out = ak.softmax(x, dim=2, dtype=torch.float32)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), definition(x.float(), 2), **TOLERANCES[torch.float32])


def test_invalid_dim_raises_like_torch():
    with pytest.raises(IndexError):
        ak.softmax(torch.randn(3, 5), dim=2)
