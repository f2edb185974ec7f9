"""The Triton dropout + residual + LayerNorm against the float64 reference under its own mask,
beyond the generic kernel check: odd shapes in float32, bfloat16 and float16, with and without
dropout and affine parameters, every value of every schedule parameter, the mask being Philox
with eight half-words per counter, its keep rate, the forward and backward agreeing on it, and the
public ``dropout_add_layer_norm`` reaching the Triton path. On a CUDA device where there is one,
else in Triton's interpreter (test_gpu_compile.py compiles the kernels for Hopper)."""

import numpy as np
import pytest
import torch

from test_gpu_kernels import DEVICE, _module, _triton_path  # noqa: F401  (sets Triton's interpreter up)
from test_kernel_layer_norm import block, check_against_reference, philox_words

import adopt_kernels as ak
from adopt_kernels import _dispatch
from adopt_kernels.kernels import layer_norm as kernel

SCHEDULES = [
    {"rows": 1, "bwd_rows": 16, "num_warps": 2},
    {"rows": 2, "bwd_rows": 64, "num_warps": 4},
    {"rows": 4, "bwd_rows": 256, "num_warps": 8},
    {"rows": 8, "bwd_rows": 16, "num_warps": 16},
]


# every shape in float32 with and without dropout, a few in the half types and at a high rate
# (each pairing is a compilation on a GPU)
CASES = [("float32", s, p) for s in ((3, 5, 123), (2, 7, 80), (1, 1, 13), (6, 768), (2, 3)) for p in (0.0, 0.25)] + [
    ("bfloat16", (3, 5, 123), 0.25), ("bfloat16", (6, 768), 0.7), ("float16", (2, 7, 80), 0.25),
    ("float16", (1, 1, 13), 0.0), ("float32", (2, 3), 0.7)]


@pytest.mark.parametrize("dtype_name,shape,p", CASES, ids=str)
def test_matches_float64_reference(dtype_name, shape, p):
    before = _dispatch.CALLS["layer_norm"]
    check_against_reference(shape, dtype_name, p, affine=True, device=DEVICE)
    assert _dispatch.CALLS["layer_norm"] == before + 1, "the Triton kernel did not run"


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16", "float16"])
def test_without_affine(dtype_name):
    check_against_reference((4, 9, 37), dtype_name, 0.1, affine=False, device=DEVICE)


def test_schedules_cover_the_space():
    space = kernel.KERNEL.cuda_space
    assert all(space.legal(s, {"rows": 35, "n": 123, "dtype": "float32"}) for s in SCHEDULES)
    for name, values in space.params.items():
        assert {s[name] for s in SCHEDULES} == set(values), name


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: "-".join(str(v) for v in s.values()))
@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
def test_schedules_agree(schedule, dtype_name):
    check_against_reference((5, 7, 123), dtype_name, 0.2, affine=True, schedule=schedule, seed=3, device=DEVICE)


def test_the_mask_is_philox_eight_half_words_per_counter():
    """Element j of row r keeps when the low (j even) or high 16 bits of word (j % 8) / 2 of
    counter (c_lo, c_hi, 0, 0), c = r * ceil(n / 8) + j / 8, under key (seed_lo, seed_hi) are at
    least p * 2^16."""
    rows, n, p, seed = 3, 77, 0.3, (0x12345678 << 32) | 0x9ABCDEF0
    j = np.arange(n)
    expected = np.zeros((rows, n), dtype=bool)
    for r in range(rows):
        c = r * ((n + 7) // 8) + j // 8
        counters = np.stack([c & 0xFFFFFFFF, c >> 32, np.zeros(n), np.zeros(n)], 1).astype(np.uint64)
        words = philox_words(counters, [seed & 0xFFFFFFFF, seed >> 32])
        halves = (words[j, (j % 8) // 2] >> (16 * (j % 2)).astype(np.uint64)) & np.uint64(0xFFFF)
        expected[r] = halves >= kernel.threshold16(p)
    keep = kernel.keep_factors(rows, n, p, seed, device=DEVICE).cpu()
    assert np.array_equal(keep.numpy() > 0, expected)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_the_mask_keeps_one_minus_p_and_scales(p):
    keep = kernel.keep_factors(64, 300, p, 99, device=DEVICE).cpu()
    kept = keep != 0
    sigma = (p * (1 - p) / keep.numel()) ** 0.5
    assert abs(kept.double().mean().item() - (1 - p)) < 5 * sigma
    assert torch.equal(keep[kept], torch.full_like(keep[kept], 1 / (1 - p)))
    assert not torch.equal(keep, kernel.keep_factors(64, 300, p, 99 + (1 << 40), device=DEVICE).cpu())


def _block_on_device(n, p):
    ln, drop = block(n, p)
    return ln.to(DEVICE), drop


def test_the_public_api_reaches_the_triton_kernel_and_its_backward_uses_the_forwards_mask():
    ln, drop = _block_on_device(48, 0.3)
    g = torch.Generator().manual_seed(0)
    x, r = (torch.randn(4, 6, 48, generator=g).to(DEVICE).requires_grad_(True) for _ in range(2))
    before = _dispatch.CALLS["layer_norm"]
    torch.manual_seed(7)
    y = ak.dropout_add_layer_norm(x, r, ln, drop, training=True)
    y.backward(torch.randn(4, 6, 48, generator=g).to(DEVICE))
    assert _dispatch.CALLS["layer_norm"] == before + 1
    assert ln.weight.grad is not None and ln.bias.grad is not None
    keep = x.grad / r.grad
    kept = keep != 0
    assert 0.5 < kept.double().mean().item() < 0.9
    torch.testing.assert_close(keep[kept], torch.full_like(keep[kept], 1 / 0.7), rtol=1e-5, atol=0)
    torch.testing.assert_close(y, ln(x * keep + r), rtol=1e-5, atol=1e-5)
    torch.manual_seed(7)
    assert torch.equal(ak.dropout_add_layer_norm(x, r, ln, drop, training=True), y)
    # a plain Dropout module's own mode decides, as calling it would
    out_eval = ak.dropout_add_layer_norm(x, r, ln, drop.eval(), training=False)
    assert _dispatch.CALLS["layer_norm"] == before + 3
    torch.testing.assert_close(out_eval, ln(x + r), rtol=1e-5, atol=1e-5)


def test_without_dropout_both_inputs_get_the_same_gradient():
    ln, drop = _block_on_device(40, 0.5)
    x, r = (torch.randn(3, 40).to(DEVICE).requires_grad_(True) for _ in range(2))
    ak.dropout_add_layer_norm(x, r, ln, drop.eval(), training=False).sum().backward()
    assert torch.equal(x.grad, r.grad)


def test_unsupported_inputs_take_the_reference_path(monkeypatch):
    x = torch.randn(3, 8).to(DEVICE)
    assert kernel.dropout_add_layer_norm(x.double(), x.double(), None, None, 1e-5) is None
    assert kernel.dropout_add_layer_norm(x, x, None, None, 1e-5, p=1.0) is None
    assert kernel.dropout_add_layer_norm(x, x[0], None, None, 1e-5) is None
    wide = torch.zeros(1, kernel.GPU_MAX_N + 1).to(DEVICE)
    assert kernel.dropout_add_layer_norm(wide, wide, None, None, 1e-5) is None
    monkeypatch.setenv("ADOPT_DISABLE", "dropout_add_layer_norm")
    assert kernel.dropout_add_layer_norm(x, x, None, None, 1e-5) is None


def test_negative_control_another_mask_fails_the_check(monkeypatch):
    mod = _module(kernel.KERNEL)
    real = mod.keep_factors
    monkeypatch.setattr(mod, "keep_factors", lambda rows, n, p, seed, device: real(rows, n, p, seed + 1, device))
    run, _, check = kernel.make_case(mod.TEST_WORKLOADS[0], seed=1, device=DEVICE)
    with pytest.raises(AssertionError):
        check(run(dict(kernel.KERNEL.cuda_space.default)))


def test_the_words_interleave_with_join_and_column_by_column_alike(monkeypatch):
    _module(kernel.KERNEL)
    from adopt_kernels.gpu import _philox

    joined = kernel.keep_factors(5, 70, 0.4, 3, device=DEVICE)
    assert _philox._join, "tl.join did not compile here: the kernels draw their words column by column"
    monkeypatch.setattr(_philox, "_join", False)
    assert torch.equal(kernel.keep_factors(5, 70, 0.4, 3, device=DEVICE), joined)
    check_against_reference((3, 70), "float32", 0.4, affine=True, device=DEVICE)
