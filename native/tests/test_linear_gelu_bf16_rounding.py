"""linear_gelu in bfloat16 rounds the pre-activation once, with the bias in it, as F.linear does:
no less accurate than the torch code it replaces, forward and backward, against float64."""
import pytest
import torch
import torch.nn.functional as F

import adopt_kernels as ak
from adopt_kernels import _dispatch
from adopt_kernels.kernels import bias_gelu


def _case(seed=0):
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(256, 768).to(torch.bfloat16)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(768, 256, generator=g) / 16)
        lin.bias.copy_(torch.randn(768, generator=g))
    x = torch.randn(4, 100, 256, generator=g).to(torch.bfloat16)
    dy = torch.randn(4, 100, 768, generator=g).to(torch.bfloat16)
    return lin, x, dy


def _errors(fn, lin, x, dy, approximate):
    """Mean absolute error of the output and of the x, weight and bias gradients against float64."""
    xs = x.detach().requires_grad_()
    y = fn(xs)
    y.backward(dy)
    got = [y, xs.grad, lin.weight.grad, lin.bias.grad]
    lin.zero_grad(set_to_none=True)
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, lin.weight, lin.bias))
    r = F.gelu(F.linear(x64, w64, b64), approximate=approximate)
    r.backward(dy.double())
    return [(a.double() - b).abs().mean().item() for a, b in zip(got, (r, x64.grad, w64.grad, b64.grad))]


def no_less_accurate(approximate):
    """Each error of the compiled call over torch's own, at most 1.02 (the same roundings)."""
    lin, x, dy = _case()
    before = _dispatch.CALLS["bias_gelu"]
    ours = _errors(lambda t: ak.linear_gelu(t, lin, approximate), lin, x, dy, approximate)
    assert _dispatch.CALLS["bias_gelu"] > before, "the compiled kernel did not run"
    eager = _errors(lambda t: F.gelu(lin(t), approximate=approximate), lin, x, dy, approximate)
    ratios = [o / e for o, e in zip(ours, eager)]
    assert all(r <= 1.02 for r in ratios), f"error over torch's (output, dx, dW, db): {ratios}"


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_no_less_accurate_than_torch(approximate, monkeypatch):
    monkeypatch.setenv("ADOPT_CPU_MIN_BYTES", "0")
    no_less_accurate(approximate)


def test_second_order_takes_the_bias_of_the_product(monkeypatch):
    monkeypatch.setenv("ADOPT_CPU_MIN_BYTES", "0")
    lin, x, _ = _case(1)
    outs = []
    for fn in (lambda t: ak.linear_gelu(t, lin, "none"), lambda t: F.gelu(lin(t))):
        xs = x[:, :8].float().to(torch.bfloat16).detach().requires_grad_()
        (gx,) = torch.autograd.grad(fn(xs).float().pow(2).sum(), xs, create_graph=True)
        (ggx,) = torch.autograd.grad(gx.float().sum(), xs)
        outs.append((gx.detach().float(), ggx.float()))
    for a, b in zip(*outs):
        assert torch.allclose(a, b, rtol=0.05, atol=0.05 * b.abs().max().item())


def test_negative_control_bias_added_after_rounding(monkeypatch):
    # the bias added by the kernel to a product already rounded to bfloat16: the exact GELU's
    # output error is about 1.2x torch's, which the check must catch
    monkeypatch.setenv("ADOPT_CPU_MIN_BYTES", "0")
    monkeypatch.setattr(bias_gelu, "bias_in_product", lambda dtype: False)
    with pytest.raises(AssertionError, match="error over torch's"):
        no_less_accurate("none")
