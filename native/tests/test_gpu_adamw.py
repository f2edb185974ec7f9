"""The Triton Adam/AdamW step through the public optimizers: FusedAdam/FusedAdamW on the
kernel's device (CUDA, or the CPU under Triton's interpreter) against torch's own step, with
uneven tensors, an empty one, mixed dtypes in a group, and groups the kernel refuses."""

import pytest
import torch
from torch import nn

from test_gpu_kernels import DEVICE, _triton_path  # noqa: F401  (the interpreter set-up)

from adopt_kernels import _dispatch  # noqa: E402
from adopt_kernels._impl.optim import FusedAdam, FusedAdamW  # noqa: E402
from adopt_kernels.kernels import _common  # noqa: E402

# sizes a multiple of 16 (the vectorised launch) and odd ones (the other launch)
SHAPES = [(37, 23), (16, 48), (123,), (0,), (5, 3, 7), (1,), (64,), (3001,)]


def _params(dtypes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(s, generator=g).to(DEVICE, d)) for s, d in zip(SHAPES, dtypes)]


def _steps(opt, ps, steps=3):
    for i in range(steps):
        g = torch.Generator().manual_seed(100 + i)
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g).to(DEVICE, p.dtype)
        opt.step()


@pytest.mark.parametrize("cls,fused,wd", [(torch.optim.AdamW, FusedAdamW, 0.1), (torch.optim.Adam, FusedAdam, 0.1),
                                          (torch.optim.Adam, FusedAdam, 0.0)])
def test_optimizer_steps_through_triton(cls, fused, wd):
    dtypes = [torch.float32, torch.bfloat16, torch.float32, torch.float32, torch.float16, torch.bfloat16, torch.float32, torch.bfloat16]
    a = [nn.Parameter(p.detach().double()) for p in _params(dtypes)]
    b = _params(dtypes)
    ref, opt = cls(a, lr=0.01, weight_decay=wd), fused(b, lr=0.01, weight_decay=wd)
    before = _dispatch.CALLS["adamw"]
    for i in range(3):
        g = torch.Generator().manual_seed(100 + i)
        for p, q in zip(a, b):
            q.grad = torch.randn(q.shape, generator=g).to(DEVICE, q.dtype)
            p.grad = q.grad.double()
        ref.step()
        opt.step()
    assert _dispatch.CALLS["adamw"] == before + 3 * 3  # one launch per step and dtype of the group
    for p, q in zip(a, b):
        name = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[q.dtype]
        _common.assert_matches(q.detach().cpu(), p.detach().cpu(), name, "param")
        for key in ("exp_avg", "exp_avg_sq"):
            assert opt.state[q][key].dtype == torch.float32 and opt.state[q][key].device == q.device
            # the moments follow the rounded parameters (L2 decay adds them to the gradient)
            _common.assert_matches(opt.state[q][key].cpu(), ref.state[p][key].cpu(), name, key)


def test_refused_groups_are_stepped_by_torch():
    dtypes = [torch.float32] * len(SHAPES)
    a, b = _params(dtypes, seed=1), _params(dtypes, seed=1)
    groups = lambda ps: [{"params": ps[:4]}, {"params": ps[4:], "amsgrad": True}]  # noqa: E731
    ref, opt = torch.optim.AdamW(groups(a), lr=0.01), FusedAdamW(groups(b), lr=0.01)
    before = _dispatch.CALLS["adamw"]
    _steps(ref, a)
    _steps(opt, b)
    assert _dispatch.CALLS["adamw"] == before + 3
    for p, q in zip(a, b):
        _common.assert_matches(q.detach().cpu(), p.detach().cpu(), "float32", "param")
