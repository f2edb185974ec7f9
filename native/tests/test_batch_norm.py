import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

import adopt_kernels as ak
from adopt_kernels._impl import batch_norm as bn_impl
from checks import DTYPES, assert_close, compare

CONV_CONFIGS = [
    dict(in_channels=3, out_channels=5, kernel_size=3),
    dict(in_channels=3, out_channels=6, kernel_size=(3, 2), stride=2, padding=1, bias=False),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=2, dilation=2, groups=2),
    dict(in_channels=3, out_channels=5, kernel_size=3, padding=1, padding_mode="reflect"),
    dict(in_channels=3, out_channels=5, kernel_size=3, padding=1, padding_mode="circular", bias=False),
    dict(in_channels=6, out_channels=6, kernel_size=3, padding="same", groups=6),
]
BN_CONFIGS = [
    dict(),
    dict(affine=False),
    dict(momentum=None),
    dict(track_running_stats=False),
    dict(affine=False, momentum=None, eps=1e-3),
]


def randomise_bn(bn):
    """Non-trivial affine parameters and running statistics, as in a trained model."""
    with torch.no_grad():
        if bn.affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        if bn.track_running_stats:
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2.0)
            bn.num_batches_tracked.fill_(3)
    return bn


def conv_bn_pair(conv_cfg, bn_cfg, dtype):
    conv = nn.Conv2d(**conv_cfg).to(dtype)
    bn = randomise_bn(nn.BatchNorm2d(conv_cfg["out_channels"], **bn_cfg).to(dtype))
    return nn.Sequential(conv, bn)


def run_steps(fn, steps):
    def wrapped(x, pair):
        out = None
        for _ in range(steps):
            out = fn(x, pair[0], pair[1])
        return out

    return wrapped


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("conv_cfg", CONV_CONFIGS)
@pytest.mark.parametrize("bn_cfg", BN_CONFIGS)
@pytest.mark.parametrize("training", [False, True])
def test_conv_bn_matches_modules(dtype, conv_cfg, bn_cfg, training):
    pair = conv_bn_pair(conv_cfg, bn_cfg, dtype).train(training)
    x = torch.randn(2, conv_cfg["in_channels"], 9, 7, dtype=dtype)
    # Three steps so running statistics (and momentum=None averaging) are compared too.
    compare(
        run_steps(lambda x, conv, bn: bn(conv(x)), 3),
        run_steps(ak.conv_bn, 3),
        [x],
        [pair],
        dtype=dtype,
    )


def test_conv_bn_batch_of_one_eval():
    pair = conv_bn_pair(CONV_CONFIGS[0], {}, torch.float64).eval()
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    compare(lambda x, p: p(x), lambda x, p: ak.conv_bn(x, p[0], p[1]), [x], [pair], dtype=torch.float64)


def test_eval_mode_folds_and_training_mode_does_not(monkeypatch):
    calls = []
    original = bn_impl._batch_norm_as_module
    monkeypatch.setattr(bn_impl, "_batch_norm_as_module", lambda *a: calls.append(1) or original(*a))
    pair = conv_bn_pair(CONV_CONFIGS[0], {}, torch.float32)
    x = torch.randn(2, 3, 6, 6)
    pair.eval()
    ak.conv_bn(x, pair[0], pair[1])
    assert calls == []
    pair.train()
    ak.conv_bn(x, pair[0], pair[1])
    assert calls == [1]


def test_eval_without_running_stats_uses_batch_statistics():
    pair = conv_bn_pair(CONV_CONFIGS[0], dict(track_running_stats=False), torch.float64).eval()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    out = ak.conv_bn(x, pair[0], pair[1])
    torch.testing.assert_close(out, pair(x))
    mean = out.mean(dim=(0, 2, 3))
    torch.testing.assert_close(mean, pair[1].bias, atol=1e-9, rtol=0)


def test_folded_weights_follow_parameter_updates():
    pair = conv_bn_pair(CONV_CONFIGS[0], {}, torch.float64).eval()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    ak.conv_bn(x, pair[0], pair[1])
    with torch.no_grad():
        pair[0].weight.mul_(2)
        pair[1].running_var.mul_(3)
    torch.testing.assert_close(ak.conv_bn(x, pair[0], pair[1]), pair(x))


def test_conv_bn_fallbacks_call_the_modules(monkeypatch):
    x = torch.randn(2, 3, 6, 6)
    pair = conv_bn_pair(CONV_CONFIGS[0], {}, torch.float32).eval()
    seen = []
    handle = pair[0].register_forward_hook(lambda mod, args, out: seen.append("conv") or out * 2)
    torch.testing.assert_close(ak.conv_bn(x, pair[0], pair[1]), pair(x))
    assert seen == ["conv", "conv"]
    handle.remove()

    class ShiftedBN(nn.BatchNorm2d):
        def forward(self, x):
            return super().forward(x) + 1.0

    bn = randomise_bn(ShiftedBN(5)).eval()
    torch.testing.assert_close(ak.conv_bn(x, pair[0], bn), bn(pair[0](x)))

    monkeypatch.setenv("ADOPT_DISABLE", "conv_bn")
    monkeypatch.setattr(bn_impl, "_folded", lambda *a: pytest.fail("folded while disabled"))
    torch.testing.assert_close(ak.conv_bn(x, pair[0], pair[1]), pair(x))


def test_mismatched_channels_raise_like_the_modules():
    conv, bn = nn.Conv2d(3, 5, 3).eval(), nn.BatchNorm2d(4).eval()
    x = torch.randn(2, 3, 6, 6)
    with pytest.raises(RuntimeError):
        bn(conv(x))
    with pytest.raises(RuntimeError):
        ak.conv_bn(x, conv, bn)


def linear_bn_pair(in_features, out_features, bias, bn_features, bn_cfg, dtype):
    linear = nn.Linear(in_features, out_features, bias=bias).to(dtype)
    bn = randomise_bn(nn.BatchNorm1d(bn_features, **bn_cfg).to(dtype))
    return nn.Sequential(linear, bn)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("bn_cfg", BN_CONFIGS)
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("batch", [1, 5])
def test_linear_bn_2d(dtype, bias, bn_cfg, training, batch):
    if batch == 1 and (training or bn_cfg.get("track_running_stats") is False):
        batch = 2  # batch statistics of a single value per channel are refused by BatchNorm1d
    pair = linear_bn_pair(7, 11, bias, 11, bn_cfg, dtype).train(training)
    x = torch.randn(batch, 7, dtype=dtype)
    compare(
        run_steps(lambda x, lin, bn: bn(lin(x)), 3),
        run_steps(ak.linear_bn, 3),
        [x],
        [pair],
        dtype=dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bn_cfg", BN_CONFIGS)
@pytest.mark.parametrize("training", [False, True])
def test_linear_bn_3d(dtype, bn_cfg, training):
    # (N, C, L) input: BatchNorm1d normalises dimension 1, the linear layer maps the last.
    pair = linear_bn_pair(7, 9, True, 5, bn_cfg, dtype).train(training)
    x = torch.randn(3, 5, 7, dtype=dtype)
    compare(
        run_steps(lambda x, lin, bn: bn(lin(x)), 3),
        run_steps(ak.linear_bn, 3),
        [x],
        [pair],
        dtype=dtype,
    )


def test_linear_bn_training_batch_of_one_raises_like_module():
    pair = linear_bn_pair(7, 11, True, 11, {}, torch.float32).train()
    with pytest.raises(ValueError):
        pair(torch.randn(1, 7))
    with pytest.raises(ValueError):
        ak.linear_bn(torch.randn(1, 7), pair[0], pair[1])


def test_linear_bn_fallback_when_disabled(monkeypatch):
    pair = linear_bn_pair(7, 11, True, 11, {}, torch.float32).eval()
    monkeypatch.setenv("ADOPT_DISABLE", "linear_bn")
    monkeypatch.setattr(bn_impl, "_folded", lambda *a: pytest.fail("folded while disabled"))
    x = torch.randn(4, 7)
    torch.testing.assert_close(ak.linear_bn(x, pair[0], pair[1]), pair(x))


def make_network(dtype):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 5, 3, stride=2, bias=False, padding_mode="reflect", padding=1),
        nn.BatchNorm2d(5, momentum=None),
        nn.Flatten(),
        nn.Linear(5 * 4 * 3, 9),
        nn.BatchNorm1d(9),
        nn.ReLU(),
        nn.BatchNorm1d(9),
        nn.Linear(9, 4),
    ).to(dtype)
    for module in net:
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            randomise_bn(module)
    return net


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [False, True])
def test_fused_sequential_matches_sequential(dtype, training, monkeypatch):
    original = make_network(dtype).train(training)
    fused = ak.FusedSequential(*[copy.deepcopy(m) for m in original])
    fused.load_state_dict(original.state_dict(), strict=True)
    assert list(fused.state_dict()) == list(original.state_dict())

    pairs = []
    for name in ("conv_bn", "linear_bn"):
        real = getattr(bn_impl, name)
        monkeypatch.setattr(bn_impl, name, lambda *a, real=real, name=name: pairs.append(name) or real(*a))

    x = torch.randn(3, 3, 8, 6, dtype=dtype)
    ref_x, fused_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    for _ in range(2):
        ref_out, fused_out = original(ref_x), fused(fused_x)
        assert_close(fused_out, ref_out, dtype)
    g = torch.randn(ref_out.shape, dtype=dtype)
    (ref_out * g).sum().backward()
    (fused_out * g).sum().backward()
    assert_close(fused_x.grad, ref_x.grad, dtype)
    ref_params = dict(original.named_parameters())
    for name, param in fused.named_parameters():
        assert_close(param.grad, ref_params[name].grad, dtype)
    ref_state = original.state_dict()
    for name, value in fused.state_dict().items():
        if value.is_floating_point():
            assert_close(value, ref_state[name], dtype)
        else:
            assert torch.equal(value, ref_state[name]), name
    # Per forward two conv pairs and one linear pair, two forwards; the lone BatchNorm1d after the
    # ReLU ran as itself.
    assert pairs.count("conv_bn") == 4 and pairs.count("linear_bn") == 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_fused_sequential_fuses_linear_gelu(dtype, approximate, monkeypatch):
    # nn.Sequential(Linear, GELU, Linear): a prompt/MLP head as transformers writes it
    original = nn.Sequential(nn.Linear(6, 10), nn.GELU(approximate=approximate), nn.Linear(10, 3)).to(dtype)
    fused = ak.FusedSequential(*[copy.deepcopy(m) for m in original])
    calls = []
    real = bn_impl.linear_gelu
    monkeypatch.setattr(bn_impl, "linear_gelu", lambda *a: calls.append(a[2]) or real(*a))
    x = torch.randn(4, 5, 6, dtype=dtype)
    ref_x, fused_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref_out, fused_out = original(ref_x), fused(fused_x)
    assert_close(fused_out, ref_out, dtype)
    (ref_out.sum() * 1.5).backward()
    (fused_out.sum() * 1.5).backward()
    assert_close(fused_x.grad, ref_x.grad, dtype)
    assert calls == [approximate]
    # switched off: the children run as nn.Sequential runs them
    monkeypatch.setenv("ADOPT_DISABLE", "linear_gelu")
    fused(fused_x)
    assert calls == [approximate]


@pytest.mark.parametrize("hook", ["forward", "pre", "global"])
def test_fused_sequential_calls_a_hooked_gelu(hook):
    # a hook on the GELU (activation patching, capture) runs as nn.Sequential runs it: the pair
    # is not fused, whatever the kernel would compute
    torch.manual_seed(0)
    original = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
    fused = ak.FusedSequential.from_sequential(original)
    x = torch.randn(2, 5, 16)
    handle = (
        original[1].register_forward_hook(lambda mod, args, out: out.clamp(max=0.1)) if hook == "forward"
        else original[1].register_forward_pre_hook(lambda mod, args: (args[0] * 0.5,)) if hook == "pre"
        else torch.nn.modules.module.register_module_forward_hook(lambda mod, args, out: out * 2 if isinstance(mod, nn.GELU) else out)
    )
    try:
        want = original(x)
        torch.testing.assert_close(fused(x), want)
    finally:
        handle.remove()
    assert not torch.allclose(want, original(x))  # the hook changed the output


def test_fused_sequential_constructors():
    layers = OrderedDict([("conv", nn.Conv2d(3, 4, 3)), ("bn", nn.BatchNorm2d(4)), ("act", nn.ReLU())])
    original = nn.Sequential(layers)
    fused = ak.FusedSequential(OrderedDict((k, copy.deepcopy(v)) for k, v in layers.items()))
    fused.load_state_dict(original.state_dict(), strict=True)
    assert list(fused.state_dict()) == ["conv.weight", "conv.bias", "bn.weight", "bn.bias",
                                        "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    shared = ak.FusedSequential.from_sequential(original)
    assert shared.conv is original.conv and list(shared.state_dict()) == list(original.state_dict())
    x = torch.randn(2, 3, 6, 6)
    for net in (original, fused, shared):
        net.eval()
    torch.testing.assert_close(fused(x), original(x))
    torch.testing.assert_close(shared(x), original(x))
    original.load_state_dict(ak.FusedSequential.from_sequential(original).state_dict(), strict=True)


class _NormWithAct(nn.BatchNorm2d):
    """A norm layer a caller may pass in place of the default: a BatchNorm2d subclass."""

    def forward(self, x):
        return torch.relu(super().forward(x))


def test_built_as_checks_the_exact_class():
    assert ak.built_as(nn.BatchNorm2d(4), "torch.nn.BatchNorm2d")
    # a subclass, another layer, or a name that does not import is not the default class
    assert not ak.built_as(_NormWithAct(4), "torch.nn.BatchNorm2d")
    assert not ak.built_as(nn.GroupNorm(2, 4), "torch.nn.BatchNorm2d")
    assert not ak.built_as(nn.BatchNorm2d(4), "torch.nn.NoSuchNorm")
    assert not ak.built_as(nn.BatchNorm2d(4), "no_such_package.BatchNorm2d")
    assert ak.built_as(nn.GELU(approximate="tanh"), "torch.nn.GELU")
    # a class of the rewritten file itself is passed as the class
    assert ak.built_as(_NormWithAct(4), _NormWithAct)
    assert not ak.built_as(nn.BatchNorm2d(4), _NormWithAct)


class NormAct(nn.BatchNorm2d):
    """A batch norm followed by its drop and act submodules, as timm's BatchNormAct2d runs."""

    def __init__(self, num_features, act=None, **kwargs):
        super().__init__(num_features, **kwargs)
        self.drop = nn.Identity()
        self.act = act if act is not None else nn.ReLU()

    def forward(self, x):
        return self.act(self.drop(super().forward(x)))


NORM_ACT_NAME = f"{NormAct.__module__}.{NormAct.__qualname__}"


@pytest.fixture
def norm_act_known(monkeypatch):
    monkeypatch.setattr(bn_impl, "NORM_ACT_CLASSES", (NORM_ACT_NAME,))


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("conv_cfg", CONV_CONFIGS[:3])
@pytest.mark.parametrize("act", [nn.ReLU(), nn.SiLU(), nn.Identity()])
def test_conv_bn_act_matches_modules(norm_act_known, monkeypatch, training, conv_cfg, act):
    conv = nn.Conv2d(**conv_cfg)
    bn = randomise_bn(NormAct(conv_cfg["out_channels"], act=act))
    pair = nn.Sequential(conv, bn).train(training)
    folded = []
    real_folded = bn_impl._folded
    monkeypatch.setattr(bn_impl, "_folded", lambda *a: folded.append(1) or real_folded(*a))
    x = torch.randn(2, conv_cfg["in_channels"], 7, 7)
    expected = copy.deepcopy(pair)(x)
    torch.testing.assert_close(ak.conv_bn_act(x, conv, bn), expected)
    assert bool(folded) is not training


def test_conv_bn_act_runs_the_modules_for_other_classes(monkeypatch):
    conv = nn.Conv2d(3, 5, 3)
    bn = randomise_bn(NormAct(5)).eval()
    x = torch.randn(2, 3, 6, 6)
    monkeypatch.setattr(bn_impl, "_folded", lambda *a: pytest.fail("folded a class not known to run BN, drop, act"))
    # not registered: its forward could do anything
    torch.testing.assert_close(ak.conv_bn_act(x, conv, bn), bn(conv(x)))
    monkeypatch.setattr(bn_impl, "NORM_ACT_CLASSES", (NORM_ACT_NAME,))
    # a plain BatchNorm2d has no drop or act
    plain = randomise_bn(nn.BatchNorm2d(5)).eval()
    torch.testing.assert_close(ak.conv_bn_act(x, conv, plain), plain(conv(x)))
    # a hook on the norm must run
    handle = bn.register_forward_hook(lambda mod, args, out: out * 2)
    torch.testing.assert_close(ak.conv_bn_act(x, conv, bn), bn(conv(x)))
    handle.remove()


def test_conv_bn_act_unbatched_input_raises_like_the_modules(norm_act_known):
    conv = nn.Conv2d(3, 5, 3)
    bn = randomise_bn(NormAct(5)).eval()
    x = torch.randn(3, 6, 6)
    with pytest.raises(ValueError):
        bn(conv(x))
    with pytest.raises(ValueError):
        ak.conv_bn_act(x, conv, bn)
