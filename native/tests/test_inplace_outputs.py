"""A compiled kernel's output can be changed in place as torch's own result can (`h = norm(x);
h += residual`, an `nn.Dropout(inplace=True)` after the activation), and the gradient is the
torch code's. The outputs were views made inside the autograd Function, which autograd forbids
changing in place."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import adopt_kernels as ak
from adopt_kernels import _dispatch

torch.manual_seed(0)
X = torch.randn(2, 8, 64)
LIN = nn.Linear(64, 64)
LN = nn.LayerNorm(64)
W = torch.rand(64) + 0.5

CASES = {
    "rms_norm": ("rms_norm", lambda a: ak.rms_norm(a, W, 1e-6), lambda a: W * (a * torch.rsqrt(a.pow(2).mean(-1, keepdim=True) + 1e-6))),
    "dropout_add_layer_norm": ("layer_norm", lambda a: ak.dropout_add_layer_norm(a, X, LN, 0.0, False), lambda a: LN(a + X)),
    "linear_gelu": ("bias_gelu", lambda a: ak.linear_gelu(a, LIN), lambda a: F.gelu(LIN(a))),
    "gated_act": ("gated_act", lambda a: ak.gated_act(*a.chunk(2, -1), nn.SiLU()), lambda a: F.silu(a.chunk(2, -1)[0]) * a.chunk(2, -1)[1]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_output_changed_in_place_backpropagates_as_torchs(name, monkeypatch):
    monkeypatch.setenv("ADOPT_CPU_MIN_BYTES", "0")
    kernel, fused, eager = CASES[name]
    grads = []
    for fn in (fused, eager):
        a = X.clone().requires_grad_()
        before = _dispatch.CALLS[kernel]
        y = fn(a)
        y.add_(1.0)
        F.dropout(y, 0.0, True, inplace=True)
        (y * y).sum().backward()
        grads.append(a.grad)
        if fn is fused:
            assert _dispatch.CALLS[kernel] > before, "the compiled kernel did not run"
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["rms_norm", "dropout_add_layer_norm"])
def test_an_input_made_under_inference_mode_trains_the_weights_as_torchs_code_does(name, monkeypatch):
    """An activation computed under ``torch.inference_mode`` (a frozen encoder) then normalised
    by a trained layer: autograd refuses to save an inference tensor, which the torch code never
    saves (it saves what it computes from it); the kernel saves a normal copy."""
    monkeypatch.setenv("ADOPT_CPU_MIN_BYTES", "0")
    kernel, fused, eager = CASES[name]
    with torch.inference_mode():
        x = X * 1.0
    grads = []
    for fn in (fused, eager):
        weight = LN.weight if name == "dropout_add_layer_norm" else W
        weight.requires_grad_(True)
        weight.grad = None
        before = _dispatch.CALLS[kernel]
        fn(x).pow(2).sum().backward()
        grads.append(weight.grad.clone())
        if fn is fused:
            assert _dispatch.CALLS[kernel] > before, "the compiled kernel did not run"
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-4)
