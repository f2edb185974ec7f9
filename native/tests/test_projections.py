import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import adopt_kernels as ak
from adopt_kernels._impl import projections
from checks import DTYPES, compare


class Attn(nn.Module):
    def __init__(self, hidden, q_out, kv_out, biases, dtype):
        super().__init__()
        self.q_proj = nn.Linear(hidden, q_out, bias=biases[0]).to(dtype)
        self.k_proj = nn.Linear(hidden, kv_out, bias=biases[1]).to(dtype)
        self.v_proj = nn.Linear(hidden, kv_out, bias=biases[2]).to(dtype)


def count_stacks(monkeypatch):
    calls = []
    real = projections._stacked
    monkeypatch.setattr(projections, "_stacked", lambda layers: calls.append(len(layers)) or real(layers))
    return calls


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5, 13), (1, 1, 13), (4, 13)])
@pytest.mark.parametrize("widths", [(12, 12), (12, 6), (15, 3)])
@pytest.mark.parametrize("biases", [(True, True, True), (False, False, False), (True, False, True)])
def test_fused_qkv_matches_three_projections(dtype, shape, widths, biases, monkeypatch):
    calls = count_stacks(monkeypatch)
    attn = Attn(13, widths[0], widths[1], biases, dtype)
    x = torch.randn(shape, dtype=dtype)
    _, outs = compare(
        lambda x, a: (a.q_proj(x), a.k_proj(x), a.v_proj(x)),
        lambda x, a: ak.fused_qkv(x, a.q_proj, a.k_proj, a.v_proj),
        [x],
        [attn],
        dtype=dtype,
    )
    assert calls == [3]
    assert all(o.is_contiguous() for o in outs)


def test_fused_qkv_outputs_are_independent():
    attn = Attn(13, 8, 8, (True, True, True), torch.float64)
    x = torch.randn(1, 1, 13, dtype=torch.float64)

    def program(project):
        inp = x.clone().requires_grad_()
        q, k, v = project(inp)
        scores = k * v  # saves k and v for backward
        q.mul_(2.0)  # in-place on one output, as some attention code does
        (scores.sum() + q.sum()).backward()
        grads = [inp.grad] + [p.grad.clone() for p in attn.parameters()]
        attn.zero_grad(set_to_none=True)
        return (q.detach(), k.detach(), v.detach()), grads

    ref, ref_grads = program(lambda t: (attn.q_proj(t), attn.k_proj(t), attn.v_proj(t)))
    out, grads = program(lambda t: ak.fused_qkv(t, attn.q_proj, attn.k_proj, attn.v_proj))
    for o, r in zip(out + tuple(grads), ref + tuple(ref_grads)):
        torch.testing.assert_close(o, r)


def test_fused_qkv_view_merging_last_dim():
    attn = Attn(13, 8, 4, (True, True, True), torch.float32)
    q, k, v = ak.fused_qkv(torch.randn(3, 5, 13), attn.q_proj, attn.k_proj, attn.v_proj)
    assert q.view(3, -1).shape == (3, 40) and k.view(3, -1).shape == (3, 20)


@pytest.mark.parametrize("case", ["hook", "subclass", "dtype", "in_features", "disabled", "instance_forward"])
def test_fused_qkv_fallbacks(case, monkeypatch):
    attn = Attn(13, 8, 4, (True, True, True), torch.float64)
    x = torch.randn(3, 5, 13, dtype=torch.float64)
    if case == "hook":
        attn.k_proj.register_forward_hook(lambda mod, args, out: out + 1.0)
    elif case == "subclass":
        class Scaled(nn.Linear):
            def forward(self, x):
                return super().forward(x) * 3.0

        attn.v_proj = Scaled(13, 4).double()
    elif case == "dtype":
        attn.v_proj = attn.v_proj.float()
    elif case == "in_features":
        attn.v_proj = nn.Linear(5, 4).double()
    elif case == "disabled":
        monkeypatch.setenv("ADOPT_DISABLE", "fused_qkv")
    elif case == "instance_forward":
        attn.q_proj.forward = lambda x: torch.zeros(x.shape[:-1] + (8,), dtype=x.dtype)
    calls = count_stacks(monkeypatch)

    if case in ("dtype", "in_features"):
        # The original code fails on such layers; the kernel calls them one by one and fails
        # the same way instead of concatenating incompatible weights.
        with pytest.raises(RuntimeError):
            attn.v_proj(x)
        with pytest.raises(RuntimeError):
            ak.fused_qkv(x, attn.q_proj, attn.k_proj, attn.v_proj)
        assert calls == []
        return
    out = ak.fused_qkv(x, attn.q_proj, attn.k_proj, attn.v_proj)
    expected = (attn.q_proj(x), attn.k_proj(x), attn.v_proj(x))
    for o, e in zip(out, expected):
        torch.testing.assert_close(o, e)
    assert calls == []


class MLP(nn.Module):
    def __init__(self, hidden, inner, bias, act, dtype):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inner, bias=bias).to(dtype)
        self.up_proj = nn.Linear(hidden, inner, bias=bias).to(dtype)
        self.down_proj = nn.Linear(inner, hidden, bias=bias).to(dtype)
        self.act = act

    def forward(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class SiLUActivation(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


ACTIVATIONS = {
    "silu": (lambda: nn.SiLU(), True),
    "gelu_tanh": (lambda: nn.GELU(approximate="tanh"), True),
    "F.silu": (lambda: F.silu, True),
    "F.gelu": (lambda: F.gelu, True),
    "hf_silu": (lambda: SiLUActivation(), True),
    "relu": (lambda: nn.ReLU(), True),
    "inplace_silu": (lambda: nn.SiLU(inplace=True), False),
    "inplace_relu": (lambda: nn.ReLU(inplace=True), False),
    "lambda": (lambda: (lambda x: x * torch.sigmoid(x)), False),
    # what a rewrite passes for `F.gelu(gate, approximate="tanh")`: out of place like F.gelu
    "partial_gelu_tanh": (lambda: functools.partial(F.gelu, approximate="tanh"), True),
    "partial_inplace_silu": (lambda: functools.partial(F.silu, inplace=True), False),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act_name", list(ACTIVATIONS))
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(3, 5, 7), (1, 1, 7)])
def test_gated_mlp_matches_module(dtype, act_name, bias, shape, monkeypatch):
    make_act, fused_expected = ACTIVATIONS[act_name]
    calls = count_stacks(monkeypatch)
    mlp = MLP(7, 11, bias, make_act(), dtype)
    x = torch.randn(shape, dtype=dtype)
    compare(
        lambda x, m: m(x),
        lambda x, m: ak.gated_mlp(x, m.gate_proj, m.up_proj, m.down_proj, m.act),
        [x],
        [mlp],
        dtype=dtype,
    )
    assert calls == ([2] if fused_expected else [])


def test_gated_mlp_fallbacks(monkeypatch):
    mlp = MLP(7, 11, False, nn.SiLU(), torch.float64)
    x = torch.randn(3, 5, 7, dtype=torch.float64)
    calls = count_stacks(monkeypatch)
    mlp.up_proj.register_forward_pre_hook(lambda mod, args: (args[0] * 0.5,))
    torch.testing.assert_close(ak.gated_mlp(x, mlp.gate_proj, mlp.up_proj, mlp.down_proj, mlp.act), mlp(x))
    assert calls == []

    mlp = MLP(7, 11, False, nn.SiLU(), torch.float64)
    monkeypatch.setenv("ADOPT_DISABLE", "gated_mlp")
    torch.testing.assert_close(ak.gated_mlp(x, mlp.gate_proj, mlp.up_proj, mlp.down_proj, mlp.act), mlp(x))
    assert calls == []


def test_gated_mlp_calls_down_proj_hooks():
    mlp = MLP(7, 11, False, nn.SiLU(), torch.float64)
    mlp.down_proj.register_forward_hook(lambda mod, args, out: out * 0.0)
    out = ak.gated_mlp(torch.randn(3, 7, dtype=torch.float64), mlp.gate_proj, mlp.up_proj, mlp.down_proj, mlp.act)
    assert torch.count_nonzero(out) == 0


def test_fused_qkv_leaves_no_gradient_on_a_projection_whose_output_is_unused():
    # the last layer of a model may leave one projection's output unused: separate calls give
    # its parameters no gradient (None); an optimiser skips them, so fused must do the same
    attn = Attn(13, 12, 6, (True, True, True), torch.float64)
    x = torch.randn(3, 5, 13, dtype=torch.float64, requires_grad=True)
    q, k, v = ak.fused_qkv(x, attn.q_proj, attn.k_proj, attn.v_proj)
    ((q * 2).sum() + v.pow(2).sum()).backward()
    assert attn.k_proj.weight.grad is None and attn.k_proj.bias.grad is None
    got = {n: p.grad.clone() for n, p in attn.named_parameters() if p.grad is not None}
    got_x = x.grad.clone()
    attn.zero_grad(set_to_none=True)
    x.grad = None
    ((attn.q_proj(x) * 2).sum() + attn.v_proj(x).pow(2).sum()).backward()
    assert set(got) == {n for n, p in attn.named_parameters() if p.grad is not None}
    for n, p in attn.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(got[n], p.grad)
    torch.testing.assert_close(got_x, x.grad)


def _separate_and_fused_grads(attn, x, frozen=()):
    """Gradients of x and of every trainable parameter, from separate calls and from fused_qkv,
    each after two backward passes (the second accumulates into the first's .grad)."""
    for name in frozen:
        attn.get_parameter(name).requires_grad_(False)
    out = {}
    for how in ("separate", "fused"):
        attn.zero_grad(set_to_none=True)
        xl = x.detach().requires_grad_()
        for step in range(2):
            if how == "separate":
                q, k, v = attn.q_proj(xl), attn.k_proj(xl), attn.v_proj(xl)
            else:
                q, k, v = ak.fused_qkv(xl, attn.q_proj, attn.k_proj, attn.v_proj)
            ((q * (step + 1)).sum() + k.pow(2).sum() + (v * v.detach().sign()).sum()).backward()
        out[how] = {"x": xl.grad, **{n: p.grad.clone() for n, p in attn.named_parameters() if p.grad is not None}}
    return out["separate"], out["fused"]


@pytest.mark.parametrize("biases", [(True, True, True), (False, False, False), (True, False, True)])
@pytest.mark.parametrize("frozen", [(), ("q_proj.weight", "k_proj.weight", "v_proj.weight")])
def test_fused_qkv_backward_over_the_stacked_gradient(biases, frozen, monkeypatch):
    # every output has a gradient: the backward runs two matmuls over the stacked gradient, not
    # the per-layer loop; gradients accumulated over two passes and frozen weights as separate calls
    def per_layer_not_expected(*a):
        raise AssertionError("the per-layer backward ran")

    monkeypatch.setattr(projections._StackedLinear, "_backward_per_layer", staticmethod(per_layer_not_expected))
    attn = Attn(13, 12, 6, biases, torch.float64)
    ref, got = _separate_and_fused_grads(attn, torch.randn(3, 5, 13, dtype=torch.float64), frozen)
    assert ref.keys() == got.keys()
    for name in ref:
        torch.testing.assert_close(got[name], ref[name])


def test_fused_qkv_stacked_backward_negative_control(monkeypatch):
    # the comparison above catches a stacked backward that hands the layers each other's rows
    real = projections._StackedLinear._backward_stacked

    def swapped(ctx, x, weights, grads):
        out = list(real(ctx, x, weights, grads))
        out[2], out[4] = out[4], out[2]  # q's and k's weight gradients exchanged
        return tuple(out)

    monkeypatch.setattr(projections._StackedLinear, "_backward_stacked", staticmethod(swapped))
    attn = Attn(13, 12, 12, (True, True, True), torch.float64)
    ref, got = _separate_and_fused_grads(attn, torch.randn(3, 5, 13, dtype=torch.float64))
    with pytest.raises(AssertionError):
        torch.testing.assert_close(got["q_proj.weight"], ref["q_proj.weight"])


def test_fused_qkv_backward_under_autocast():
    # mixed-precision training: the outputs are bf16, the saved input and weights fp32
    attn = Attn(13, 12, 6, (True, True, True), torch.float32)
    x = torch.randn(3, 5, 13, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = ak.fused_qkv(x, attn.q_proj, attn.k_proj, attn.v_proj)
    sum(o.float().sum() for o in fused).backward()
    got = {n: p.grad.clone() for n, p in attn.named_parameters()}
    got_x = x.grad.clone()
    attn.zero_grad(set_to_none=True)
    x.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = (attn.q_proj(x), attn.k_proj(x), attn.v_proj(x))
    sum(o.float().sum() for o in ref).backward()
    for n, p in attn.named_parameters():
        assert got[n].dtype == p.grad.dtype == torch.float32
        torch.testing.assert_close(got[n], p.grad, atol=5e-2, rtol=2e-2)
    torch.testing.assert_close(got_x, x.grad, atol=5e-2, rtol=2e-2)


def _update_through_data(layer):
    layer.weight.data.mul_(0.5)  # EMA and manual init code: seen by neither _version nor data_ptr


@pytest.mark.parametrize("grad", [False, True])
def test_fused_qkv_follows_every_kind_of_weight_update(grad):
    torch.manual_seed(0)
    layers = [nn.Linear(16, w) for w in (16, 8, 8)]
    x = torch.randn(2, 5, 16)

    def check():
        with torch.set_grad_enabled(grad):
            got = ak.fused_qkv(x, *layers)
            for a, b in zip(got, [layer(x) for layer in layers]):
                torch.testing.assert_close(a, b)
        assert all(t.is_contiguous() for t in got)

    check()
    # through .data, an optimiser-style in-place update, a load_state_dict, a swapped parameter
    _update_through_data(layers[0])
    check()
    with torch.no_grad():
        layers[1].weight.add_(1.0)
    check()
    layers[2].load_state_dict({"weight": torch.randn(8, 16), "bias": torch.randn(8)})
    check()
    layers[0].bias = nn.Parameter(torch.randn(16))
    check()


def test_inference_keeps_no_stacked_weights(monkeypatch):
    # no stacked copy is kept to go stale, and none is made per call (it saves nothing there)
    calls = count_stacks(monkeypatch)
    torch.manual_seed(0)
    q, k, v = (nn.Linear(16, 16) for _ in range(3))
    gate, up, down = nn.Linear(16, 24), nn.Linear(16, 24), nn.Linear(24, 16)
    x = torch.randn(2, 40, 16)
    with torch.no_grad():
        ak.fused_qkv(x, q, k, v)
        ak.gated_mlp(x, gate, up, down, nn.SiLU())
    assert calls == []


@pytest.mark.parametrize("grad", [False, True])
def test_gated_mlp_follows_an_update_through_data(grad):
    torch.manual_seed(1)
    gate, up, down = nn.Linear(12, 20), nn.Linear(12, 20), nn.Linear(20, 12)
    x = torch.randn(3, 12)
    with torch.set_grad_enabled(grad):
        ak.gated_mlp(x, gate, up, down, F.silu)
        _update_through_data(up)
        torch.testing.assert_close(ak.gated_mlp(x, gate, up, down, F.silu), down(F.silu(gate(x)) * up(x)))


def test_projections_bench_prints_its_table_and_one_json_line(capsys):
    import json

    from adopt_harness import projections_bench

    # the bench sets the process's thread counts; conftest restores them after the test
    assert projections_bench.main(["--threads", "1", "--repeats", "1", "--shapes", "8x16,12x8"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(w["tokens"], w["width"]) for w in last["workloads"]] == [(8, 16), (12, 8)]
    assert all(w["separate_ms"] > 0 and w["stacked_ms"] > 0 for w in last["workloads"])
