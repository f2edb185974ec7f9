"""The compiled dropout + residual + LayerNorm kernel against a float64 reference."""

import ctypes
import platform
import shutil
import subprocess

import numpy as np
import pytest
import torch
from torch import nn

import adopt_kernels as ak
from adopt_kernels import _build, _dispatch
from adopt_kernels.kernels import layer_norm as kernel
from adopt_kernels.kernels import _common
from adopt_kernels.kernels._common import assert_matches

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def inputs(shape, dtype, affine=True, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x, r, dy = (torch.randn(shape, generator=g).to(device, dtype) for _ in range(3))
    n = shape[-1]
    w = (1 + 0.2 * torch.randn(n, generator=g)).to(device, dtype) if affine else None
    b = (0.2 * torch.randn(n, generator=g)).to(device, dtype) if affine else None
    return x, r, w, b, dy


def leaves(tensors):
    return [t.detach().clone().requires_grad_(True) if t is not None else None for t in tensors]


def grads(tensors):
    return [t.grad if t is not None else None for t in tensors]


def check_against_reference(shape, dtype_name, p, affine, schedule=None, seed=0, device="cpu"):
    """Kernel outputs and gradients equal the float64 reference under the kernel's own mask."""
    x, r, w, b, dy = inputs(shape, DTYPES[dtype_name], affine, seed, device)
    mask_seed = 1234 + seed
    ins = leaves((x, r, w, b))
    y = kernel.dropout_add_layer_norm(*ins, 1e-5, p, seed=mask_seed, schedule=schedule)
    assert y is not None and y.dtype == x.dtype and y.shape == x.shape
    y.backward(dy)
    rows, n = x.numel() // shape[-1], shape[-1]
    keep = kernel.keep_factors(rows, n, p, mask_seed, device=device).double().view(shape) if p > 0 else None
    ref = leaves([t.double() if t is not None else None for t in (x, r, w, b)])
    y_ref = kernel.reference(*ref, 1e-5, keep)
    y_ref.backward(dy.double())
    norm = max(1.0, rows ** 0.5)  # weight and bias gradients are sums over rows
    pairs = [("output", y, y_ref), ("grad x", ins[0].grad, ref[0].grad), ("grad residual", ins[1].grad, ref[1].grad)]
    if affine:
        pairs += [("grad weight", ins[2].grad / norm, ref[2].grad / norm), ("grad bias", ins[3].grad / norm, ref[3].grad / norm)]
    for name, actual, expected in pairs:
        assert_matches(actual, expected, dtype_name, name)


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape", [(3, 5, 123), (2, 7, 80), (1, 1, 13), (6, 768)])
@pytest.mark.parametrize("p", [0.0, 0.25])
def test_matches_float64_reference(dtype_name, shape, p):
    check_against_reference(shape, dtype_name, p, affine=True)


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
def test_without_affine(dtype_name):
    check_against_reference((4, 9, 37), dtype_name, 0.1, affine=False)


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
def test_streaming_stores(dtype_name, monkeypatch):
    # rows of 123 values start off any alignment: the streamed rows have heads and tails
    monkeypatch.setattr(_common, "STREAM_BYTES", 0)
    check_against_reference((3, 5, 123), dtype_name, 0.25, affine=True)
    check_against_reference((3, 5, 123), dtype_name, 0.0, affine=True)


# every value of every schedule parameter appears at least once (each distinct compiled part is a
# compile; the OpenMP kind and chunk are set at call time and cost none): the float32 ones run the
# schedule test, the last runs in bfloat16
SCHEDULES = [
    dict(kernel.SPACE.default),
    {"chunk": 1, "vec_bits": 128, "unroll": 1, "stats": "onepass", "omp_kind": "dynamic"},
    {"chunk": 64, "vec_bits": 256, "unroll": 4, "stats": "onepass", "omp_kind": "static"},
    {"chunk": 2, "vec_bits": 256, "unroll": 8, "stats": "twopass", "omp_kind": "guided"},
    dict(kernel.SPACE.default, chunk=8, omp_kind="guided"),
    dict(kernel.SPACE.default, chunk=32, omp_kind="dynamic"),
    dict(kernel.SPACE.default, chunk=128),
    dict(kernel.SPACE.default, vec_bits=0, stats="onepass"),  # scalar code
]
BF16_SCHEDULE = {"chunk": 16, "vec_bits": 128, "unroll": 4, "stats": "twopass", "omp_kind": "dynamic"}


def test_schedules_cover_the_space():
    every = SCHEDULES + [BF16_SCHEDULE]
    assert all(kernel.SPACE.legal(s) for s in every)
    for name, values in kernel.SPACE.params.items():
        assert {s[name] for s in every} == set(values), name


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_schedules_agree(schedule):
    check_against_reference((5, 7, 123), "float32", 0.2, affine=True, schedule=schedule, seed=3)


def test_bfloat16_other_schedule():
    check_against_reference((5, 7, 123), "bfloat16", 0.2, affine=True, schedule=BF16_SCHEDULE, seed=4)


def test_large_mean_keeps_variance():
    """A mean far above the spread must not cancel the variance (both statistics modes)."""
    x, r, w, b, dy = inputs((8, 256), torch.float32)
    r = r + 1000.0
    for schedule in SCHEDULES:
        stats = schedule["stats"]
        y = kernel.dropout_add_layer_norm(x, r, w, b, 1e-5, 0.0, schedule=schedule)
        # the sum is rounded to float32 as in eager code; only the statistics are under test
        h = (x + r).double()
        expected = kernel.reference(h, torch.zeros_like(h), w.double(), b.double(), 1e-5)
        assert_matches(y, expected, "float32", f"{stats} output")


def test_make_case_checks_pass():
    run, eager, check = kernel.make_case({"rows": 33, "n": 200, "dtype": "float32"}, seed=2)
    check(run(kernel.SPACE.default))
    assert len(eager()) == 5


# ---------------------------------------------------------------- through the public API


def block(n, p, dtype=torch.float32):
    ln = nn.LayerNorm(n, eps=1e-6).to(dtype)
    g = torch.Generator().manual_seed(n)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5, generator=g)
        ln.bias.uniform_(-0.5, 0.5, generator=g)
    return ln, nn.Dropout(p)


def test_public_api_runs_compiled_kernel():
    ln, drop = block(48, 0.1)
    x, r = torch.randn(4, 6, 48, requires_grad=True), torch.randn(4, 6, 48, requires_grad=True)
    before = _dispatch.CALLS["layer_norm"]
    out = ak.dropout_add_layer_norm(x, r, ln, drop, training=True)
    out.sum().backward()
    assert _dispatch.CALLS["layer_norm"] == before + 1
    assert ln.weight.grad is not None and ln.bias.grad is not None
    # a plain Dropout module's own mode decides, as calling it would
    out_eval = ak.dropout_add_layer_norm(x, r, ln, drop.eval(), training=False)
    assert _dispatch.CALLS["layer_norm"] == before + 2
    torch.testing.assert_close(out_eval, ln(x + r), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["float64", "p_one", "broadcast_residual", "weight_dtype", "two_dims", "empty", "switched_off"])
def test_unsupported_inputs_take_reference_path(case, monkeypatch):
    n = 16
    ln, drop = block(n, 0.5)
    x, r = torch.randn(3, n), torch.randn(3, n)
    training = False
    if case == "float64":
        x, r, ln = x.double(), r.double(), ln.double()
    elif case == "p_one":
        drop, training = nn.Dropout(1.0), True
    elif case == "broadcast_residual":
        r = torch.randn(n)
    elif case == "weight_dtype":
        x, r = x.bfloat16(), r.bfloat16()
    elif case == "two_dims":
        ln = nn.LayerNorm((3, n))
    elif case == "empty":
        x, r = torch.randn(0, n), torch.randn(0, n)
    elif case == "switched_off":
        monkeypatch.setenv("ADOPT_DISABLE", "dropout_add_layer_norm")
    drop.train(training)  # the module's own mode decides, as calling it would
    before = _dispatch.CALLS["layer_norm"]
    if case == "weight_dtype":
        # bfloat16 input with a float32 LayerNorm fails in torch's own layer_norm, as before
        with pytest.raises(RuntimeError):
            ak.dropout_add_layer_norm(x, r, ln, drop, training)
        assert _dispatch.CALLS["layer_norm"] == before
        return
    out = ak.dropout_add_layer_norm(x, r, ln, drop, training)
    assert _dispatch.CALLS["layer_norm"] == before
    if case == "p_one":
        torch.testing.assert_close(out, ln(r))  # everything dropped
    else:
        torch.testing.assert_close(out, ln(x + r))


def test_kernel_returns_none_when_unsupported(monkeypatch):
    x = torch.randn(3, 8)
    assert kernel.dropout_add_layer_norm(x.double(), x.double(), None, None, 1e-5) is None
    assert kernel.dropout_add_layer_norm(x, x, None, None, 1e-5, p=1.0) is None
    assert kernel.dropout_add_layer_norm(x, x[0], None, None, 1e-5) is None
    monkeypatch.setenv("ADOPT_DISABLE", "native")
    assert kernel.dropout_add_layer_norm(x, x, None, None, 1e-5) is None


def test_non_contiguous_input():
    x = torch.randn(40, 6).t()
    r = torch.randn(6, 40)
    ln, _ = block(40, 0.0)
    torch.testing.assert_close(ak.dropout_add_layer_norm(x, r, ln, 0.0, False), ln(x + r), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- dropout


def dropout_run(p, shape=(64, 512), seed=None):
    """Forward and backward with a unit upstream gradient; the residual's gradient is the
    LayerNorm's input gradient and x's is that times the keep factor."""
    ln, drop = block(shape[-1], p)
    g = torch.Generator().manual_seed(0)
    x, r = (torch.randn(shape, generator=g).requires_grad_(True) for _ in range(2))
    if seed is not None:
        torch.manual_seed(seed)
    y = ak.dropout_add_layer_norm(x, r, ln, drop, training=True)
    y.backward(torch.randn(shape, generator=torch.Generator().manual_seed(1)))
    return x, r, ln, y


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_keeps_one_minus_p_and_scales(p):
    x, r, ln, y = dropout_run(p)
    keep = x.grad / r.grad
    kept = keep != 0
    frac = kept.double().mean().item()
    sigma = (p * (1 - p) / keep.numel()) ** 0.5
    assert abs(frac - (1 - p)) < 5 * sigma
    torch.testing.assert_close(keep[kept], torch.full_like(keep[kept], 1 / (1 - p)), rtol=1e-6, atol=0)
    # the forward used the mask the backward applied
    torch.testing.assert_close(y, ln(x * keep + r), rtol=1e-5, atol=1e-5)


def test_dropout_reproducible_under_manual_seed():
    _, _, _, y1 = dropout_run(0.3, seed=11)
    _, _, _, y2 = dropout_run(0.3, seed=11)
    _, _, _, y3 = dropout_run(0.3, seed=12)
    assert torch.equal(y1, y2)
    assert not torch.equal(y1, y3)


def test_dropout_draws_once_from_torch_generator():
    ln, drop = block(32, 0.2)
    x, r = torch.randn(4, 32), torch.randn(4, 32)
    torch.manual_seed(5)
    kernel.draw_seed()
    expected = torch.get_rng_state()
    torch.manual_seed(5)
    ak.dropout_add_layer_norm(x, r, ln, drop, training=True)
    assert torch.equal(torch.get_rng_state(), expected)


def philox_words(counters, key):
    """Philox-4x32-10 in numpy (uint64 arithmetic): counters (m, 4), key (2,) -> words (m, 4)."""
    mask = np.uint64(0xFFFFFFFF)
    c = [counters[:, i].astype(np.uint64) for i in range(4)]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c[0]
        p1 = np.uint64(0xCD9E8D57) * c[2]
        c = [((p1 >> np.uint64(32)) ^ c[1] ^ k0) & mask, p1 & mask, ((p0 >> np.uint64(32)) ^ c[3] ^ k1) & mask, p0 & mask]
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & mask, (k1 + np.uint64(0xBB67AE85)) & mask
    return np.stack(c, 1)


def test_numpy_philox_matches_known_answers():
    # Random123's known-answer vectors for philox4x32_10
    cases = [
        ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
        ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
        ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0], [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
    ]
    for counter, key, expected in cases:
        assert philox_words(np.array([counter], dtype=np.uint64), key)[0].tolist() == expected


def test_kernel_mask_is_philox():
    """Element j of row r keeps when half (j / 32) % 2 of word (j / 8) % 4 of counter
    (8 * (j / 64) + j % 8, r, 0, 0) under key (seed_lo, seed_hi) is at least p * 2^16."""
    rows, n, p, seed = 3, 141, 0.3, (0x12345678 << 32) | 0x9ABCDEF0
    j = np.arange(n)
    expected = np.zeros((rows, n), dtype=bool)
    for r in range(rows):
        counters = np.stack([8 * (j // 64) + j % 8, np.full(n, r), np.zeros(n), np.zeros(n)], 1).astype(np.uint64)
        words = philox_words(counters, [seed & 0xFFFFFFFF, seed >> 32])
        halves = (words[j, (j // 8) % 4] >> (16 * ((j // 32) % 2)).astype(np.uint64)) & np.uint64(0xFFFF)
        expected[r] = halves >= kernel.threshold16(p)
    keep = kernel.keep_factors(rows, n, p, seed)
    assert np.array_equal(keep.numpy() > 0, expected)


# (-march, the CPU flags its code needs): the generator's scalar, AVX2 and AVX-512 paths
GENERATOR_BUILDS = [("x86-64", ()), ("haswell", ("avx2", "fma")), ("skylake-avx512", ("avx512f", "avx512bw", "avx512vl", "avx512dq"))]


def _cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return {w for line in f if line.startswith("flags") for w in line.split(":", 1)[1].split()}
    except OSError:
        return set()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or shutil.which(_build.compiler()) is None,
                    reason="the generator's paths are x86 builds of the host compiler")
@pytest.mark.parametrize("arch,needs", GENERATOR_BUILDS, ids=[a for a, _ in GENERATOR_BUILDS])
def test_every_generator_path_gives_the_kernels_mask(arch, needs, tmp_path):
    """The generator built for a plain x86-64 (scalar), for AVX2 and for AVX-512 gives the mask
    the kernel built for this machine applies, on rows with a pair of blocks and a tail."""
    missing = set(needs) - _cpu_flags()
    if missing:
        pytest.skip(f"this CPU cannot run the {arch} build (no {', '.join(sorted(missing))})")
    rows, n, p, seed = 5, 141, 0.3, (0x0BADCAFE << 32) | 0x13572468
    # the kernel's own source, built as the cache builds it but for that instruction set
    src, lib = tmp_path / "layer_norm.cpp", tmp_path / "layer_norm.so"
    src.write_text(_build.PRELUDE + kernel.KERNEL.source(dict(kernel.SPACE.default), "float32"))
    flags = [f"-march={arch}" if f == "-march=native" else f for f in _build.FLAGS]
    subprocess.run([_build.compiler(), *flags, str(src), "-o", str(lib)], check=True, timeout=120)
    out = torch.empty(rows, n)
    ctypes.CDLL(str(lib)).ln_dropout_keep(ctypes.c_void_p(out.data_ptr()), ctypes.c_int64(rows), ctypes.c_int64(n), ctypes.c_uint64(seed),
                                          ctypes.c_uint32(kernel.threshold16(p)), ctypes.c_float(1 / (1 - p)), ctypes.c_int(1))
    assert torch.equal(out, kernel.keep_factors(rows, n, p, seed))


def test_a_probability_below_half_of_one_in_65536_keeps_every_element_and_still_scales():
    p = 1e-6
    assert kernel.threshold16(p) == 0
    keep = kernel.keep_factors(4, 100, p, seed=3)
    assert torch.equal(keep, torch.full_like(keep, 1 / (1 - p)))
    x, r, _, _ = dropout_run(p)
    # dropout is on: x's gradient is the residual's times the scale, not the same tensor
    torch.testing.assert_close(x.grad, r.grad * torch.tensor(1 / (1 - p), dtype=torch.float32), rtol=1e-6, atol=0)
    assert not torch.equal(x.grad, r.grad)


# ---------------------------------------------------------------- negative control


@pytest.mark.parametrize("wrong", [
    ("(hb[j] - mean) * rstd * load_f(w, j)", "(hb[j] - mean) * rstd * rstd * load_f(w, j)"),
    ("store_f(gxb, j, rnd(dh) * m[j]);", "store_f(gxb, j, rnd(dh) * scale);"),
], ids=["forward", "backward_mask"])
def test_negative_control_detects_wrong_kernel(wrong, monkeypatch):
    old, new = wrong
    assert old in kernel.TEMPLATE
    monkeypatch.setattr(kernel, "TEMPLATE", kernel.TEMPLATE.replace(old, new))
    _dispatch.forget()  # render the template again instead of reusing the correct kernel
    try:
        run, _, check = kernel.make_case({"rows": 16, "n": 96, "dtype": "float32"}, seed=1)
        with pytest.raises(AssertionError):
            check(run(kernel.SPACE.default))
    finally:
        monkeypatch.undo()
        _dispatch.forget()


def _leaf_grads_are_their_own(fn):
    """After one backward through ``fn(x, residual)`` with both leaves, scaling x.grad in place
    (a per-parameter clip) leaves residual.grad as it was, as eager's add gives two tensors."""
    x, r = torch.randn(4, 6, 48, requires_grad=True), torch.randn(4, 6, 48, requires_grad=True)
    fn(x, r).mul(torch.randn(4, 6, 48)).sum().backward()
    before = r.grad.clone()
    x.grad.mul_(0.5)
    return torch.equal(r.grad, before)


def test_without_dropout_the_inputs_gradients_do_not_share_memory():
    ln, drop = block(48, 0.1)
    before = _dispatch.CALLS["layer_norm"]
    assert _leaf_grads_are_their_own(lambda x, r: ak.dropout_add_layer_norm(x, r, ln, drop, training=False))
    assert _dispatch.CALLS["layer_norm"] == before + 1
    assert _leaf_grads_are_their_own(lambda x, r: ln(x + r))


def test_negative_control_gradients_as_two_views_of_one_buffer_fail_the_check():
    class AddAsViews(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, r):
            return x + r

        @staticmethod
        def backward(ctx, g):
            g = g.contiguous()
            return g.view(g.shape), g.view(g.shape)

    assert not _leaf_grads_are_their_own(lambda x, r: AddAsViews.apply(x, r))
