import ctypes
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import adopt_kernels as ak
from adopt_kernels import _dispatch
from adopt_kernels.kernels import gated_act as kernel
from adopt_kernels.kernels._common import assert_matches

DTYPES = ["float32", "bfloat16"]
TORCH = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def inputs(shape, dtype, stacked, seed=0):
    g = torch.Generator().manual_seed(seed)
    width = shape[-1] * (2 if stacked else 1)
    make = lambda: (2 * torch.randn(*shape[:-1], width, generator=g)).to(TORCH[dtype])  # noqa: E731
    return (make(), None) if stacked else (make(), make())


def compiled(gate, up, act, schedule=None):
    if up is None:
        return kernel.gated_act_stacked(gate, act, schedule=schedule)
    return kernel.gated_act(gate, up, act, schedule=schedule)


def reference64(gate, up, act):
    g = gate.double()
    if up is None:
        return kernel.reference(*g.chunk(2, -1), act)
    return kernel.reference(g, up.double(), act)


def check_against_float64(gate, up, act, dtype, schedule=None):
    """Output and every input gradient of the compiled kernel against float64."""
    dy = torch.randn(*gate.shape[:-1], gate.size(-1) // (2 if up is None else 1)).to(gate.dtype)
    leaves = [t.detach().requires_grad_() for t in (gate, up) if t is not None]
    calls = _dispatch.CALLS[kernel.KERNEL.name]
    y = compiled(leaves[0], leaves[1] if len(leaves) > 1 else None, act, schedule)
    assert _dispatch.CALLS[kernel.KERNEL.name] == calls + 1, "the compiled path did not run"
    y.backward(dy)
    ref_leaves = [t.detach().double().requires_grad_() for t in (gate, up) if t is not None]
    ref = reference64(ref_leaves[0], ref_leaves[1] if len(ref_leaves) > 1 else None, act)
    ref.backward(dy.double())
    assert y.dtype == gate.dtype
    assert_matches(y, ref, dtype, f"{act} output")
    for i, (a, e) in enumerate(zip(leaves, ref_leaves)):
        assert_matches(a.grad, e.grad, dtype, f"{act} grad {i}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", kernel.ACTIVATIONS)
@pytest.mark.parametrize("stacked", [True, False])
@pytest.mark.parametrize("shape", [(3, 5, 123), (1, 1, 7), (2, 2100)])
def test_matches_float64(dtype, act, stacked, shape):
    gate, up = inputs(shape, dtype, stacked)
    check_against_float64(gate, up, act, dtype)


def sample_schedules(n, seed=7):
    rng = random.Random(seed)
    picked = [dict(kernel.SPACE.default)]
    while len(picked) < n:
        s = kernel.SPACE.sample(rng)
        if s not in picked:
            picked.append(s)
    return picked


@pytest.mark.parametrize("schedule", sample_schedules(4), ids=lambda s: "-".join(str(v) for v in s.values()))
def test_schedules_agree(schedule):
    # 2 rows of 1100: several column blocks per row for the small blocks, a partial last block
    for act in kernel.ACTIVATIONS:
        gate, up = inputs((2, 1100), "float32", stacked=True, seed=3)
        check_against_float64(gate, up, act, "float32", schedule)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vec_bits", [0, 256])
def test_the_library_exp_matches_float64(dtype, vec_bits):
    schedule = dict(kernel.SPACE.default, math="libm", vec_bits=vec_bits)
    for act in kernel.ACTIVATIONS:
        gate, up = inputs((3, 5, 123), dtype, stacked=True, seed=5)
        check_against_float64(gate, up, act, dtype, schedule)


def _patched_template(monkeypatch, old, new):
    """The template with ``old`` replaced by ``new`` (which must occur), builds forgotten; inputs to check it on."""
    wrong = kernel.TEMPLATE.replace(old, new)
    assert wrong != kernel.TEMPLATE
    monkeypatch.setattr(kernel, "TEMPLATE", wrong)
    monkeypatch.setattr(_dispatch, "_functions", {})
    return inputs((3, 50), "float32", stacked=True)


def test_negative_control_a_wrong_library_exp_fails_the_check(monkeypatch):
    # exp2 for exp in the math=libm branch alone: the polynomial schedules would not notice it
    gate, up = _patched_template(monkeypatch, "return std::exp(x);", "return std::exp2(x);")
    check_against_float64(gate, up, "silu", "float32", dict(kernel.SPACE.default))
    with pytest.raises(AssertionError, match="max abs error"):
        check_against_float64(gate, up, "silu", "float32", dict(kernel.SPACE.default, math="libm"))


def test_bfloat16_with_another_schedule():
    schedule = {"chunk": 1, "block": 512, "vec_bits": 128, "unroll": 4, "math": "poly", "omp_kind": "dynamic"}
    gate, up = inputs((3, 700), "bfloat16", stacked=False, seed=5)
    check_against_float64(gate, up, "silu", "bfloat16", schedule)


def test_bfloat16_rounds_like_eager():
    # the activation is rounded to bfloat16 before the product, as the eager code stores it
    gate, up = inputs((4, 300), "bfloat16", stacked=False)
    a = F.silu(gate.double()).to(torch.bfloat16).double()
    expected = (a * up.double()).to(torch.bfloat16)
    assert torch.equal(kernel.gated_act(gate, up, "silu"), expected)


def test_non_contiguous_inputs():
    gate = torch.randn(40, 6).t()
    up = torch.randn(40, 6).t()
    check_against_float64(gate, up, "gelu", "float32")


def test_erf_is_accurate():
    lib = _dispatch.library(kernel.KERNEL, kernel.SPACE.default, "float32")
    fn = lib.gated_erf_probe
    fn.restype = None
    x = torch.cat([torch.linspace(-6, 6, 600001), torch.tensor([0.0, 1e-20, -0.999999, 1.0, 3.9, 4.5, 5.0, 5.5])])
    y = torch.empty_like(x)
    fn(_dispatch.ptr(x), _dispatch.ptr(y), ctypes.c_int64(x.numel()))
    err = (y.double() - torch.special.erf(x.double())).abs().max().item()
    assert err < 2e-7, err


def test_special_values_follow_torch():
    x = torch.tensor([0.0, -20.0, 20.0, -90.0, 90.0, float("inf"), -float("inf"), float("nan")])
    for act in kernel.ACTIVATIONS:
        xl, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        y = kernel.gated_act(xl, torch.ones_like(x), act)
        y.sum().backward()
        yr = kernel.activation(xr, act)
        yr.sum().backward()
        torch.testing.assert_close(y, yr.detach(), equal_nan=True, rtol=1e-6, atol=1e-30)
        torch.testing.assert_close(xl.grad, xr.grad, equal_nan=True, rtol=1e-5, atol=1e-30)


def test_make_case_checks_out():
    workload = {"rows": 17, "n": 300, "act": "gelu_tanh", "dtype": "float32"}
    run, eager, check = kernel.make_case(workload)
    check(run(kernel.SPACE.default))
    check(eager())


@pytest.mark.parametrize("case", ["float64", "broadcast", "dtypes", "odd_stacked", "activation", "disabled", "empty"])
def test_unsupported_inputs_are_refused(case, monkeypatch):
    gate, up = torch.randn(3, 8), torch.randn(3, 8)
    calls = _dispatch.CALLS[kernel.KERNEL.name]
    if case == "float64":
        out = kernel.gated_act(gate.double(), up.double(), "silu")
    elif case == "broadcast":
        out = kernel.gated_act(gate, up[:1], "silu")
    elif case == "dtypes":
        out = kernel.gated_act(gate, up.bfloat16(), "silu")
    elif case == "odd_stacked":
        out = kernel.gated_act_stacked(torch.randn(3, 7), "silu")
    elif case == "activation":
        out = kernel.gated_act(gate, up, "relu")
    elif case == "disabled":
        monkeypatch.setenv("ADOPT_DISABLE", "gated_mlp")
        out = kernel.gated_act_stacked(gate, "silu")
    else:
        out = kernel.gated_act(gate[:0], up[:0], "silu")
    assert out is None
    assert _dispatch.CALLS[kernel.KERNEL.name] == calls


def test_negative_control_a_wrong_kernel_fails_the_check(monkeypatch):
    # one operator changed in the forward: the same check must reject it
    gate, up = _patched_template(monkeypatch, "store_f(yr, j, a * load_f(ur, j));", "store_f(yr, j, a + load_f(ur, j));")
    with pytest.raises(AssertionError, match="max abs error"):
        check_against_float64(gate, up, "silu", "float32")


def test_negative_control_a_wrong_backward_fails_the_check(monkeypatch):
    gate, up = _patched_template(monkeypatch, "if (ACT == SILU) { float s = v_sigmoid(x); return s * (1.f + x * (1.f - s)); }",
                                 "if (ACT == SILU) { float s = v_sigmoid(x); return s * (1.f - x * (1.f - s)); }")
    with pytest.raises(AssertionError, match="max abs error"):
        check_against_float64(gate, up, "silu", "float32")


class MLP(nn.Module):
    def __init__(self, act, dtype=torch.float32, hidden=12, inner=40):
        super().__init__()
        torch.manual_seed(0)
        self.gate_proj = nn.Linear(hidden, inner, bias=False).to(dtype)
        self.up_proj = nn.Linear(hidden, inner, bias=False).to(dtype)
        self.down_proj = nn.Linear(inner, hidden, bias=False).to(dtype)
        self.act = act

    def forward(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


def named(name, fn):
    """A module of a transformers activation class name, computing ``fn``."""
    return type(name, (nn.Module,), {"forward": lambda self, x: fn(x)})()


def hooked_silu():
    act = nn.SiLU()
    act.register_forward_hook(lambda mod, args, out: out * 2.0)
    return act


COMPILED = {
    "nn.SiLU": lambda: nn.SiLU(),
    "F.silu": lambda: F.silu,
    "nn.GELU": lambda: nn.GELU(),
    "nn.GELU(tanh)": lambda: nn.GELU(approximate="tanh"),
    "F.gelu": lambda: F.gelu,
    "SiLUActivation": lambda: named("SiLUActivation", F.silu),
    "GELUActivation": lambda: named("GELUActivation", F.gelu),
    "NewGELUActivation": lambda: named("NewGELUActivation", lambda x: F.gelu(x, approximate="tanh")),
}
NOT_COMPILED = {
    "relu": lambda: nn.ReLU(),
    "lambda": lambda: (lambda x: x * torch.sigmoid(x)),
    "hooked": hooked_silu,
    "QuickGELUActivation": lambda: named("QuickGELUActivation", lambda x: x * torch.sigmoid(1.702 * x)),
}


def mlp_grads(mlp, x, fn):
    xl = x.detach().requires_grad_()
    out = fn(mlp, xl)
    out.backward(torch.ones_like(out))
    grads = [xl.grad] + [p.grad.clone() for p in mlp.parameters()]
    mlp.zero_grad(set_to_none=True)
    return out.detach(), grads


@pytest.mark.parametrize("name", list(COMPILED) + list(NOT_COMPILED))
@pytest.mark.parametrize("stack", [True, False])
def test_gated_mlp_runs_the_kernel_for_known_activations(name, stack):
    act = (COMPILED.get(name) or NOT_COMPILED[name])()
    mlp = MLP(act)
    if not stack:
        # a hook on gate_proj keeps the two projections apart: the kernel takes two tensors
        mlp.gate_proj.register_forward_hook(lambda mod, args, out: out + 0.5)
    x = torch.randn(3, 5, 12)
    expected, expected_grads = mlp_grads(mlp, x, lambda m, t: m(t))
    calls = _dispatch.CALLS[kernel.KERNEL.name]
    out, grads = mlp_grads(mlp, x, lambda m, t: ak.gated_mlp(t, m.gate_proj, m.up_proj, m.down_proj, m.act))
    assert _dispatch.CALLS[kernel.KERNEL.name] == calls + (1 if name in COMPILED else 0)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    for a, e in zip(grads, expected_grads):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5)


def test_gated_mlp_bfloat16_and_inference():
    mlp = MLP(nn.SiLU(), torch.bfloat16)
    x = torch.randn(4, 12).to(torch.bfloat16)
    calls = _dispatch.CALLS[kernel.KERNEL.name]
    with torch.no_grad():
        out = ak.gated_mlp(x, mlp.gate_proj, mlp.up_proj, mlp.down_proj, mlp.act)
        expected = mlp.double()(x.double())
    assert _dispatch.CALLS[kernel.KERNEL.name] == calls + 1
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), expected, rtol=3e-2, atol=3e-2)


def test_gated_mlp_disabled_keeps_the_original(monkeypatch):
    monkeypatch.setenv("ADOPT_DISABLE", "gated_mlp")
    mlp = MLP(nn.SiLU())
    calls = _dispatch.CALLS[kernel.KERNEL.name]
    x = torch.randn(2, 12)
    torch.testing.assert_close(ak.gated_mlp(x, mlp.gate_proj, mlp.up_proj, mlp.down_proj, mlp.act), mlp(x))
    assert _dispatch.CALLS[kernel.KERNEL.name] == calls
