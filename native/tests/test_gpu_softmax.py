"""The Triton softmax against the float64 reference, beyond the generic kernel check: every mask
kind at odd shapes in float32, bfloat16 and float16, the looped kernel for long rows, masks
whose leading dimensions do not collapse, a mask's gradient in its own dtype, fully masked rows,
and the public ``softmax`` reaching the Triton path. On a CUDA device where there is one, else
in Triton's interpreter (test_gpu_compile.py compiles the kernels for Hopper)."""

import math

import pytest
import torch

from test_gpu_kernels import DEVICE, _triton_path  # noqa: F401  (sets Triton's interpreter up)
from test_kernel_softmax import SHAPES, _run, check_float64, check_public_route

from adopt_kernels.kernels import softmax as K

LOOPED = {"rows": 1, "block": 32, "num_warps": 4}  # blocks far narrower than the rows, to loop


# every shape in float32, a few in the half types (each pairing is a compilation on a GPU)
CASES = [("float32", s) for s in SHAPES] + [("bfloat16", (3, 5, 123)), ("bfloat16", (17, 1000)), ("float16", (2, 9, 80)),
                                            ("float16", (4, 3, 1))]


@pytest.mark.parametrize("dtype,shape", CASES, ids=str)
@pytest.mark.parametrize("kind", [None, "additive", "bool", "padding", "causal"])
def test_forward_and_gradients_match_float64(dtype, shape, kind):
    if kind == "causal" and len(shape) < 2:
        pytest.skip("causal needs a query axis")
    check_float64(shape, kind, dtype, device=DEVICE)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("kind", [None, "additive", "bool", "padding", "causal"])
def test_the_looped_kernel_matches_float64(dtype, kind):
    check_float64((2, 3, 45), kind, dtype, LOOPED, DEVICE)


def test_a_row_too_long_for_registers_loops_whatever_the_schedule():
    assert K.KERNEL.cuda_space.default["block"] == 0
    check_float64((2, 40000), "padding", "float32", dict(K.KERNEL.cuda_space.default), DEVICE)


@pytest.mark.parametrize("mask_shape", [(2, 1, 4, 1, 9), (2, 1, 4, 5, 1), (1, 3, 1, 5, 9), (4, 5, 9), (9,)], ids=str)
@pytest.mark.parametrize("schedule", [None, LOOPED], ids=["whole", "looped"])
def test_broadcast_masks_of_every_layout(mask_shape, schedule):
    shape = (2, 3, 4, 5, 9)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(shape, generator=g)
    dy = torch.randn(shape, generator=g)
    mask = torch.randn(mask_shape, generator=g)
    got = _run(lambda a, m: K.softmax(a, 0.5, m, True, schedule=schedule), x.to(DEVICE), dy.to(DEVICE), mask.to(DEVICE))
    want = _run(lambda a, m: K.reference(a, 0.5, m, True), x.double(), dy.double(), mask.double())
    for name, a, e in zip(("output", "grad x", "grad mask"), got, want):
        K.assert_matches(a.cpu(), e, "float32", name)


@pytest.mark.parametrize("mask_dtype", [torch.bfloat16, torch.float16])
def test_a_mask_of_the_inputs_shape_takes_its_gradient_in_its_dtype(mask_dtype):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 5, 40, generator=g)
    dy = torch.randn(3, 5, 40, generator=g)
    mask = torch.randn(3, 5, 40, generator=g).to(mask_dtype)
    got = _run(lambda a, m: K.softmax(a, 1.0, m), x.to(DEVICE), dy.to(DEVICE), mask.to(DEVICE))
    want = _run(lambda a, m: K.reference(a, 1.0, m), x.double(), dy.double(), mask.double())
    assert got[2].dtype == mask_dtype
    K.assert_matches(got[2].cpu(), want[2], "bfloat16", "grad mask")


@pytest.mark.parametrize("schedule", [None, LOOPED], ids=["whole", "looped"])
def test_a_fully_masked_row_is_nan_with_a_zero_gradient(schedule):
    x = torch.randn(3, 40).to(DEVICE).requires_grad_(True)
    keep = torch.ones(3, 40, dtype=torch.bool)
    keep[1] = False
    y = K.softmax(x, 1.0, keep.to(DEVICE), schedule=schedule)
    assert torch.isnan(y[1]).all()
    eager = torch.softmax(x.detach().cpu().masked_fill(~keep, -math.inf), dim=-1)
    torch.testing.assert_close(y[[0, 2]].detach().cpu(), eager[[0, 2]])
    y.nan_to_num().sum().backward()
    assert (x.grad[1] == 0).all() and torch.isfinite(x.grad).all()


def test_the_public_softmax_reaches_the_triton_kernel():
    check_public_route(torch.randn(3, 5, 7).to(DEVICE), (torch.bfloat16, torch.float16))


def test_unsupported_inputs_take_the_reference_path(monkeypatch):
    x = torch.randn(4, 8).to(DEVICE)
    assert K.softmax(x.double()) is None
    assert K.softmax(x, mask=torch.zeros(8, dtype=torch.float64).to(DEVICE)) is None
    assert K.softmax(x, mask=torch.zeros(2, 4, 8).to(DEVICE)) is None
    assert K.softmax(torch.randn(8).to(DEVICE), is_causal=True) is None
    monkeypatch.setenv("ADOPT_DISABLE", "softmax")
    assert K.softmax(x) is None
