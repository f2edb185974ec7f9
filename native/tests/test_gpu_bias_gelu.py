"""The Triton bias + GELU epilogue through the public ``linear_gelu`` (on a CUDA device, else in
Triton's interpreter), its no-grad path, float16, and GELU's tails."""

import pytest
import torch
import torch.nn.functional as F

from test_gpu_kernels import DEVICE, _triton_path  # noqa: F401  (the interpreter set-up)

import adopt_kernels
from adopt_kernels import _dispatch
from adopt_kernels.kernels import bias_gelu as kernel
from adopt_kernels.kernels._common import assert_matches


def _linear(n_in, n_out, dtype, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(n_in, n_out).to(DEVICE, dtype)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_linear_gelu_public_route(approximate, dtype):
    torch_dtype = getattr(torch, dtype)
    lin = _linear(24, 70, torch_dtype)
    x = torch.randn(3, 5, 24, generator=torch.Generator().manual_seed(1)).to(DEVICE, torch_dtype)
    dy = torch.randn(3, 5, 70, generator=torch.Generator().manual_seed(2)).to(DEVICE, torch_dtype)
    before = _dispatch.CALLS["bias_gelu"]
    xl = x.detach().requires_grad_(True)
    y = adopt_kernels.linear_gelu(xl, lin, approximate)
    assert _dispatch.CALLS["bias_gelu"] == before + 1, "linear_gelu did not reach the Triton epilogue"
    y.backward(dy)
    got = (y, xl.grad, lin.weight.grad, lin.bias.grad)

    ref = _linear(24, 70, torch.float64)
    xd = x.double().requires_grad_(True)
    with torch.no_grad():
        for p, q in zip(ref.parameters(), lin.parameters()):
            p.copy_(q.double())
    yd = F.gelu(ref(xd), approximate=approximate)
    yd.backward(dy.double())
    for name, a, e in zip(("output", "grad x", "grad weight", "grad bias"), got, (yd, xd.grad, ref.weight.grad, ref.bias.grad)):
        scale = 1.0 if name in ("output", "grad x") else 15 ** 0.5  # sums over 15 rows
        assert_matches(a.double() / scale, e / scale, dtype, f"linear_gelu {name}")


def test_no_grad_writes_a_new_output_for_a_given_product():
    h0 = torch.randn(7, 40, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    b = torch.randn(40, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    kept = h0.clone()
    before = _dispatch.CALLS["bias_gelu"]
    with torch.no_grad():
        y = kernel.bias_gelu(h0, b, "none")
    assert torch.equal(h0, kept), "bias_gelu modified the caller's product"
    assert_matches(y, F.gelu(h0.double() + b.double()), "float32", "bias_gelu no-grad")
    with torch.no_grad():
        lin = _linear(12, 40, torch.float32)
        x = torch.randn(7, 12).to(DEVICE)
        y = adopt_kernels.linear_gelu(x, lin, "tanh")
        assert_matches(y, F.gelu(lin(x), approximate="tanh"), "float32", "linear_gelu no-grad")
    assert _dispatch.CALLS["bias_gelu"] == before + 2, "the no-grad calls did not reach the Triton epilogue"


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_tails_and_float16(approximate):
    vals = torch.tensor([-1e4, -60.0, -12.0, -5.5, -1e-3, 0.0, 1e-3, 3.0, 12.0, 60.0, 1e4])
    h0 = vals.repeat(3, 1).to(DEVICE)
    b = torch.zeros(vals.numel(), device=DEVICE)
    for dtype in ("float32", "float16"):
        t = getattr(torch, dtype)
        hl, bl = h0.to(t).detach().requires_grad_(True), b.to(t).detach().requires_grad_(True)
        y = kernel.bias_gelu(hl, bl, approximate)
        y.backward(torch.ones_like(y))
        hd = h0.double().requires_grad_(True)
        yd = F.gelu(hd, approximate=approximate)
        yd.backward(torch.ones_like(yd))
        assert torch.isfinite(y).all() and torch.isfinite(hl.grad).all()
        assert_matches(y.double() / 1e4, yd / 1e4, dtype, f"gelu tails {dtype}")
        assert_matches(hl.grad, hd.grad, dtype, f"gelu' tails {dtype}")
