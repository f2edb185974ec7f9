"""The Triton gated activation through the public ``gated_mlp`` and ``gated_act`` (on a CUDA
device, else in Triton's interpreter): stacked halves, separate tensors, float16."""

import copy

import pytest
import torch
import torch.nn.functional as F

from test_gpu_kernels import DEVICE, _triton_path  # noqa: F401  (the interpreter set-up)

import adopt_kernels
from adopt_kernels import _dispatch
from adopt_kernels.kernels._common import assert_matches

ACTS = {"silu": torch.nn.SiLU(), "gelu": torch.nn.GELU(), "gelu_tanh": torch.nn.GELU(approximate="tanh")}


def _grads_match(got, expected, dtype, what):
    for i, (a, e) in enumerate(zip(got, expected)):
        assert_matches(a, e, dtype, f"{what} {i}")


@pytest.mark.parametrize("kind", sorted(ACTS))
def test_gated_mlp_public_route(kind):
    torch.manual_seed(0)
    gate, up, down = (torch.nn.Linear(a, b).to(DEVICE) for a, b in ((20, 36), (20, 36), (36, 20)))
    x = torch.randn(2, 5, 20, device=DEVICE, requires_grad=True)
    before = _dispatch.CALLS["gated_act"]
    y = adopt_kernels.gated_mlp(x, gate, up, down, ACTS[kind])
    assert _dispatch.CALLS["gated_act"] == before + 1, "gated_mlp did not reach the Triton kernel"
    y.sum().backward()
    got = (y, x.grad, gate.weight.grad, up.bias.grad)
    xd = x.detach().double().requires_grad_(True)
    mods = [copy.deepcopy(m).double() for m in (gate, up, down)]
    for m in mods:
        m.zero_grad(set_to_none=True)
    yd = mods[2](ACTS[kind](mods[0](xd)) * mods[1](xd))
    yd.sum().backward()
    _grads_match(got, (yd, xd.grad, mods[0].weight.grad, mods[1].bias.grad), "float32", f"gated_mlp {kind}")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("stacked", [True, False])
def test_gated_act_halves_and_pairs(stacked, dtype):
    t = getattr(torch, dtype)
    h = (2 * torch.randn(3, 4, 2 * 33, generator=torch.Generator().manual_seed(1))).to(DEVICE, t).requires_grad_(True)
    dy = torch.randn(3, 4, 33, generator=torch.Generator().manual_seed(2)).to(DEVICE, t)
    gate, up = h.chunk(2, -1) if stacked else (h[..., :33].contiguous(), h[..., 33:].contiguous())
    before = _dispatch.CALLS["gated_act"]
    y = adopt_kernels.gated_act(gate, up, F.silu)
    assert _dispatch.CALLS["gated_act"] == before + 1
    y.backward(dy)
    hd = h.detach().double().requires_grad_(True)
    gd, ud = hd.chunk(2, -1)
    yd = F.silu(gd) * ud
    yd.backward(dy.double())
    _grads_match((y, h.grad), (yd, hd.grad), dtype, "gated_act")
