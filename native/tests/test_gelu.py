import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import adopt_kernels as ak
from checks import DTYPES, compare


# Stand-ins for transformers' activation classes, with the same names and formulas.
class GELUActivation(nn.Module):
    def forward(self, x):
        return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


class NewGELUActivation(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class FastGELUActivation(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


class GELUTanh(nn.Module):
    def forward(self, x):
        return F.gelu(x, approximate="tanh")


class GELUPytorchTanh(GELUTanh):
    pass


class BloomGelu(nn.Module):
    def forward(self, x):
        return x * 0.5 * (1.0 + torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x)))


class MyErfGelu(nn.Module):
    def forward(self, x):
        return F.gelu(x)


class QuickGELUActivation(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ClippedGELUActivation(nn.Module):
    def forward(self, x):
        return torch.clip(F.gelu(x), -10, 10)


class IdentityGELU(nn.Module):
    def forward(self, x):
        return x


class RandomGELU(nn.Module):
    def forward(self, x):
        return F.gelu(x) + torch.rand_like(x) * 1e-3


class GELUWithWrongSignature(nn.Module):
    def forward(self, x, y):
        return F.gelu(x)


class Swish(nn.Module):
    def forward(self, x):
        return F.gelu(x)  # behaves as GELU, but nothing in its name says so


class TanhOverriddenGELU(nn.GELU):
    def forward(self, x):
        return F.gelu(x, approximate="tanh")


@pytest.mark.parametrize(
    "act,kind",
    [
        (nn.GELU(), "none"),
        (nn.GELU(approximate="tanh"), "tanh"),
        (F.gelu, "none"),
        (torch.nn.functional.gelu, "none"),
        (functools.partial(F.gelu, approximate="tanh"), "tanh"),
        (functools.partial(F.gelu, approximate="none"), "none"),
        (GELUActivation(), "none"),
        (NewGELUActivation(), "tanh"),
        (FastGELUActivation(), "tanh"),
        (GELUTanh(), "tanh"),
        (GELUPytorchTanh(), "tanh"),
        (BloomGelu(), "tanh"),
        (MyErfGelu(), "none"),
        (TanhOverriddenGELU(), "tanh"),
        ("gelu", "none"),
        ("gelu_new", "tanh"),
        ("gelu_pytorch_tanh", "tanh"),
        ("gelu_fast", "tanh"),
    ],
)
def test_gelu_kind_recognises(act, kind):
    assert ak.gelu_kind(act) == kind


@pytest.mark.parametrize(
    "act",
    [
        QuickGELUActivation(),
        ClippedGELUActivation(),
        IdentityGELU(),
        RandomGELU(),
        GELUWithWrongSignature(),
        Swish(),
        nn.ReLU(),
        nn.SiLU(),
        F.silu,
        lambda x: F.gelu(x),
        functools.partial(F.gelu, approximate="sigmoid"),
        "relu",
        "quick_gelu",
        "gelu_10",
        None,
    ],
)
def test_gelu_kind_rejects(act):
    assert ak.gelu_kind(act) is None


def test_probe_leaves_module_state_alone():
    act = BloomGelu().train()
    assert ak.gelu_kind(act) == "tanh"
    assert act.training


def _clamped(mod, args, out):
    return out.clamp(max=0.1)  # an activation patch: the output the original code passes on


def _with_forward_hook(act):
    act.register_forward_hook(_clamped)
    return act


def _with_pre_hook(act):
    act.register_forward_pre_hook(lambda mod, args: (args[0] * 0.5,))
    return act


def _with_forward_set(act):
    act.forward = lambda x: F.gelu(x) * 0.5
    return act


@pytest.mark.parametrize("make", [nn.GELU, functools.partial(nn.GELU, approximate="tanh"), GELUActivation, NewGELUActivation, BloomGelu, TanhOverriddenGELU])
@pytest.mark.parametrize("change", [_with_forward_hook, _with_pre_hook, _with_forward_set])
def test_gelu_kind_is_none_for_a_module_doing_more_than_its_forward(make, change):
    # the fused kernel never calls the module: hooks on it, or a forward set on the instance,
    # must leave the site to the original code, which calls it
    act = make()
    assert ak.gelu_kind(act) is not None
    fired = []
    act.register_forward_hook(lambda mod, args, out: fired.append(1))
    assert ak.gelu_kind(change(act)) is None
    assert fired == []  # and it is not probed (a probe would run the hooks)


def test_gelu_kind_is_none_under_a_global_module_hook():
    act = nn.GELU()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda mod, args, out: out)
    try:
        assert ak.gelu_kind(act) is None
    finally:
        handle.remove()
    assert ak.gelu_kind(act) == "none"


def test_the_linear_gelu_rewrite_runs_a_hooked_activation():
    # the rewrite as rules/linear_gelu writes it, against the original code, compiled kernel forced
    torch.manual_seed(0)
    linear, act = nn.Linear(16, 32), _with_forward_hook(nn.GELU())
    x = torch.randn(2, 5, 16)

    def rewritten(x):
        if ak.enabled("linear_gelu") and ak.gelu_kind(act) is not None:
            return ak.linear_gelu(x, linear, ak.gelu_kind(act))
        return act(linear(x))

    torch.testing.assert_close(rewritten(x), act(linear(x)))
    assert rewritten(x).max() <= 0.1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(3, 5, 7), (1, 7), (1, 1, 7)])
def test_linear_gelu_matches_module_code(dtype, approximate, bias, shape):
    linear = nn.Linear(7, 11, bias=bias).to(dtype)
    act = nn.GELU(approximate=approximate)
    x = torch.randn(shape, dtype=dtype) * 2
    compare(
        lambda x, lin: act(lin(x)),
        lambda x, lin: ak.linear_gelu(x, lin, approximate),
        [x],
        [linear],
        dtype=dtype,
    )


def test_linear_gelu_default_is_exact():
    linear = nn.Linear(7, 11).double()
    x = torch.randn(3, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(ak.linear_gelu(x, linear), F.gelu(linear(x)))
    assert not torch.allclose(ak.linear_gelu(x, linear), F.gelu(linear(x), approximate="tanh"))


def test_linear_gelu_calls_linear_with_hook():
    linear = nn.Linear(7, 11)
    linear.register_forward_hook(lambda mod, args, out: out * 0.0)
    out = ak.linear_gelu(torch.randn(3, 7), linear)
    assert torch.count_nonzero(out) == 0


def test_linear_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError):
        ak.linear_gelu(torch.randn(3, 7), nn.Linear(7, 4), "sigmoid")
