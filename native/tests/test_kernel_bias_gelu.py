"""The compiled bias + GELU epilogue (and linear_gelu around it) against a float64 reference."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import adopt_kernels as ak
from adopt_kernels import _dispatch
from adopt_kernels.kernels import bias_gelu as kernel
from adopt_kernels.kernels._common import assert_matches

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def linear_inputs(shape, out_features, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = shape[-1]
    x = (1.5 * torch.randn(shape, generator=g)).to(dtype)
    w = (torch.randn(out_features, k, generator=g) / k ** 0.5).to(dtype)
    b = (0.5 * torch.randn(out_features, generator=g)).to(dtype)
    dy = torch.randn(*shape[:-1], out_features, generator=g).to(dtype)
    return x, w, b, dy


def rel_err(actual, expected):
    return (actual.double() - expected).abs().max().item() / max(expected.abs().max().item(), 1e-30)


def outputs_and_grads(fn, tensors, dy, dtype):
    ins = [t.detach().to(dtype).requires_grad_(True) for t in tensors]
    y = fn(*ins)
    y.backward(dy.to(dtype))
    return [y] + [t.grad for t in ins]


def check_linear_gelu(shape, out_features, dtype_name, approximate, schedule=None, seed=0):
    """Output and the gradients of x, weight and bias equal the float64 reference's. In
    bfloat16 the products themselves round (torch's GEMM), so there the kernel must be no less
    accurate than the eager code in bfloat16."""
    dtype = DTYPES[dtype_name]
    x, w, b, dy = linear_inputs(shape, out_features, dtype, seed)
    names = ("output", "grad x", "grad weight", "grad bias")
    ours = outputs_and_grads(lambda *t: kernel.linear_gelu(*t, approximate, schedule=schedule), (x, w, b), dy, dtype)
    assert ours[0].dtype == dtype and ours[0].shape == (*shape[:-1], out_features)
    eager = lambda *t: F.gelu(F.linear(*t), approximate=approximate)  # noqa: E731
    ref = outputs_and_grads(eager, (x, w, b), dy, torch.float64)
    if dtype_name == "bfloat16":
        low = outputs_and_grads(eager, (x, w, b), dy, dtype)
        for name, k, e, r in zip(names, ours, low, ref):
            assert rel_err(k, r) <= 2 * rel_err(e, r) + 1e-2, f"{approximate} {name}"
        return
    # gradients summed over rows (and the output width) grow like its square root
    rows = x.numel() // shape[-1]
    for name, k, r, norm in zip(names, ours, ref, (1.0, out_features ** 0.5, rows ** 0.5, rows ** 0.5)):
        assert_matches(k / norm, r / norm, dtype_name, f"{approximate} {name}")


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape,out_features", [((3, 5, 123), 80), ((2, 11, 72), 200), ((1, 7), 13), ((4, 64), 3072)])
def test_matches_float64_reference(dtype_name, approximate, shape, out_features):
    check_linear_gelu(shape, out_features, dtype_name, approximate)


# every value of every schedule parameter appears at least once (each distinct compiled part is a
# compile; the OpenMP kind and chunk are set at call time)
SCHEDULES = [
    dict(kernel.SPACE.default),
    {"cblock": 256, "rchunk": 1, "vec_bits": 128, "unroll": 1, "omp_kind": "dynamic", "omp_chunk": 4},
    {"cblock": 4096, "rchunk": 16, "vec_bits": 256, "unroll": 2, "omp_kind": "static", "omp_chunk": 16},
    {"cblock": 256, "rchunk": 4, "vec_bits": 128, "unroll": 8, "omp_kind": "guided", "omp_chunk": 1},
]


def test_schedules_cover_the_space():
    assert all(kernel.SPACE.legal(s) for s in SCHEDULES)
    for name, values in kernel.SPACE.params.items():
        assert {s[name] for s in SCHEDULES} == set(values), name


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_schedules_agree(schedule):
    # 300 columns: whole packs and a tail in every column block
    check_linear_gelu((9, 7, 40), 300, "float32", "none", schedule=schedule, seed=1)
    check_linear_gelu((9, 7, 40), 300, "float32", "tanh", schedule=schedule, seed=2)


def test_bfloat16_other_schedule():
    check_linear_gelu((9, 7, 40), 300, "bfloat16", "none", schedule=SCHEDULES[1], seed=3)


def test_make_case_checks_pass():
    for approximate in ("none", "tanh"):
        run, eager, check = kernel.make_case({"rows": 33, "n": 200, "approximate": approximate, "dtype": "float32"}, seed=2)
        check(run(kernel.SPACE.default))
        assert len(eager()) == 3


# ---------------------------------------------------------------- accuracy of the element math


def element_math(which, x):
    fn = _dispatch.function(kernel.KERNEL, "gelu_math", "float32", {"rows": 1, "n": 1, "approximate": "none"})
    out = torch.empty_like(x)
    fn(_dispatch.ptr(x), _dispatch.ptr(out), _dispatch.i64(x.numel()), kernel._int(which))
    return out.double()


def grid():
    return torch.cat([torch.linspace(-12, 12, 480_001), torch.logspace(-30, 1.1, 20_001), -torch.logspace(-30, 1.1, 20_001)])


def test_normal_cdf_accuracy():
    x = grid()
    phi = element_math(0, x)
    exact = 0.5 * torch.special.erfc(-x.double() / math.sqrt(2))
    assert (phi - exact).abs().max().item() < 1e-7
    # the lower tail has no 1 + erf cancellation: within 5e-5 relative down to x = -5 sqrt(2)
    # (Phi = 8e-13), beyond which it is 0; 1 + erf(x / sqrt 2) in float32 is off by 100% there
    tail = (x < 0) & (x >= -5 * math.sqrt(2))
    assert ((phi - exact).abs() / exact)[tail].max().item() < 5e-5
    # as erf: erf(z) = 2 Phi(z sqrt 2) - 1
    assert (2 * phi - 1 - torch.erf(x.double() / math.sqrt(2))).abs().max().item() < 2e-7


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_no_less_accurate_than_torch(approximate):
    x = grid()
    which = (2, 4) if approximate == "none" else (3, 5)
    exact = x.double().requires_grad_(True)
    y_exact = F.gelu(exact, approximate=approximate)
    y_exact.sum().backward()
    ours_y, ours_g = element_math(which[0], x), element_math(which[1], x)
    xt = x.clone().requires_grad_(True)
    torch_y = F.gelu(xt, approximate=approximate)
    torch_y.sum().backward()
    scale = x.double().abs().clamp_min(1)
    for ours, theirs, ref in ((ours_y, torch_y.detach(), y_exact.detach()), (ours_g, xt.grad, exact.grad)):
        err = ((ours - ref).abs() / scale).max().item()
        assert err < max(2e-7, 1.5 * ((theirs.double() - ref).abs() / scale).max().item())


def test_special_values_match_torch():
    x = torch.tensor([float("inf"), float("-inf"), float("nan"), 0.0, -0.0, 30.0, -30.0] + [0.0] * 57)
    for which, approximate in ((2, "none"), (3, "tanh")):
        torch.testing.assert_close(element_math(which, x).float(), F.gelu(x, approximate=approximate), equal_nan=True)


# ---------------------------------------------------------------- through the public API


def test_public_api_runs_compiled_kernel():
    linear = nn.Linear(24, 40)
    x = torch.randn(3, 5, 24, requires_grad=True)
    before = _dispatch.CALLS["bias_gelu"]
    out = ak.linear_gelu(x, linear, "tanh")
    out.sum().backward()
    assert _dispatch.CALLS["bias_gelu"] == before + 1
    assert x.grad is not None and linear.weight.grad is not None and linear.bias.grad is not None
    torch.testing.assert_close(out, F.gelu(linear(x), approximate="tanh"), rtol=1e-5, atol=1e-5)


def test_no_grad_path_leaves_inputs_alone():
    linear = nn.Linear(24, 40)
    x = torch.randn(6, 24)
    before = _dispatch.CALLS["bias_gelu"]
    with torch.no_grad():
        out = ak.linear_gelu(x, linear)
        h = linear(x)
        h_copy = h.clone()
        out2 = kernel.bias_gelu(h, linear.bias)
    assert _dispatch.CALLS["bias_gelu"] == before + 2
    torch.testing.assert_close(out, F.gelu(linear(x)), rtol=1e-5, atol=1e-5)
    assert torch.equal(h, h_copy)
    torch.testing.assert_close(out2, F.gelu(h + linear.bias), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["float64", "no_bias", "hooked", "weight_dtype", "empty", "switched_off"])
def test_unsupported_inputs_take_reference_path(case, monkeypatch):
    linear = nn.Linear(12, 20)
    x = torch.randn(4, 12)
    if case == "float64":
        linear, x = linear.double(), x.double()
    elif case == "no_bias":
        linear = nn.Linear(12, 20, bias=False)
    elif case == "hooked":
        linear.register_forward_hook(lambda mod, args, out: out * 2.0)
    elif case == "weight_dtype":
        x = x.bfloat16()
    elif case == "empty":
        x = torch.randn(0, 12)
    elif case == "switched_off":
        monkeypatch.setenv("ADOPT_DISABLE", "linear_gelu")
    before = _dispatch.CALLS["bias_gelu"]
    if case == "weight_dtype":
        # bfloat16 input with a float32 Linear fails in torch's own linear, as before
        with pytest.raises(RuntimeError):
            ak.linear_gelu(x, linear)
    else:
        torch.testing.assert_close(ak.linear_gelu(x, linear), F.gelu(linear(x)))
    assert _dispatch.CALLS["bias_gelu"] == before


def test_kernel_returns_none_when_unsupported(monkeypatch):
    x, w, b = torch.randn(3, 8), torch.randn(5, 8), torch.randn(5)
    assert kernel.linear_gelu(x.double(), w.double(), b.double()) is None
    assert kernel.linear_gelu(x, w, b, "sigmoid") is None
    assert kernel.linear_gelu(x, w, torch.randn(4)) is None
    assert kernel.bias_gelu(torch.randn(3, 5), torch.randn(4)) is None
    monkeypatch.setenv("ADOPT_DISABLE", "native")
    assert kernel.linear_gelu(x, w, b) is None


def test_non_contiguous_input():
    linear = nn.Linear(6, 50)
    x = torch.randn(6, 30).t()
    torch.testing.assert_close(ak.linear_gelu(x, linear), F.gelu(linear(x)), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- negative control


@pytest.mark.parametrize("wrong", [
    ("out[k] = h[k] > 0.f ? 1.f - lower : lower;", "out[k] = h[k] > 0.f ? 1.f - lower : 0.5f * lower;"),
    ("store_v(dbp + j + k * VL, load_v(dbp + j + k * VL) + d);", "store_v(dbp + j + k * VL, load_v(dbp + j + k * VL) + d * d);"),
    ("FOR_K g[k] = cdf[k] + h[k] *", "FOR_K g[k] = cdf[k] - h[k] *"),
], ids=["forward_cdf", "backward_bias", "forward_derivative"])
def test_negative_control_detects_wrong_kernel(wrong, monkeypatch):
    old, new = wrong
    assert old in kernel.MATH + kernel.TEMPLATE
    monkeypatch.setattr(kernel, "MATH", kernel.MATH.replace(old, new))
    monkeypatch.setattr(kernel, "TEMPLATE", kernel.TEMPLATE.replace(old, new))
    _dispatch.forget()  # render the template again instead of reusing the correct kernel
    try:
        run, _, check = kernel.make_case({"rows": 16, "n": 96, "approximate": "none", "dtype": "float32"}, seed=1)
        with pytest.raises(AssertionError):
            check(run(kernel.SPACE.default))
    finally:
        monkeypatch.undo()
        _dispatch.forget()
