"""--without: the rewrite timed with one kernel switched off, on the same instance."""

import os

import pytest
import torch
from torch import nn

import adopt_kernels as ak
from adopt_harness import speed
from adopt_kernels._impl.switches import ENV_VAR


class Projections(nn.Module):
    """q, k, v of one input through the fused projection, and what the switch said at each call."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 4)
        self.seen = []

    def forward(self, x):
        self.seen.append(os.environ.get(ENV_VAR))
        return sum(t.sum() for t in ak.fused_qkv(x, self.q, self.k, self.v))


def calls_of_stacked(model, x):
    """How many stacked matmuls one forward + backward made (the fused path's autograd node)."""
    out = model(x)
    names = []

    def walk(fn):
        if fn is None or fn in seen:
            return
        seen.add(fn)
        names.append(type(fn).__name__)
        for nxt, _ in fn.next_functions:
            walk(nxt)

    seen = set()
    walk(out.grad_fn)
    out.backward()
    return sum("StackedLinear" in n for n in names)


def test_the_kernel_is_off_inside_and_the_setting_restored_after(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    inner = Projections()
    wrapped = speed.Without(inner, ["fused_qkv"])
    x = torch.randn(3, 8)
    assert calls_of_stacked(inner, x) == 1
    assert calls_of_stacked(wrapped, x) == 0
    assert inner.seen == [None, "fused_qkv"]
    assert ENV_VAR not in os.environ
    # the same parameters: the wrapper adds none of its own
    assert [id(p) for p in wrapped.parameters()] == [id(p) for p in inner.parameters()]


def test_an_existing_setting_is_kept_and_restored_after_an_error(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "softmax")

    class Failing(nn.Module):
        def forward(self, x):
            assert os.environ[ENV_VAR] == "softmax,fused_qkv"
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        speed.Without(Failing(), ["fused_qkv"])(torch.ones(1))
    assert os.environ[ENV_VAR] == "softmax"


def test_time_pair_times_the_switched_off_variant_beside_the_rewrite(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    rewritten = Projections()
    models = {"original": Projections(), "rewritten": rewritten, "without fused_qkv": speed.Without(rewritten, ["fused_qkv"])}
    medians, _, rounds = speed.time_pair(models, {"x": torch.randn(4, 8)}, "cpu", 2, train=True)
    assert set(medians) == set(models)
    assert len(rounds["without fused_qkv"]) == 2
    # the rewrite ran with the kernel on, the wrapped calls with it off: 4 rounds each
    assert rewritten.seen.count(None) == 4 and rewritten.seen.count("fused_qkv") == 4


def test_measure_pairs_each_switched_off_variant_with_the_rewrite(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    from types import SimpleNamespace

    from adopt_harness import schema

    rewritten = Projections()
    variants = {"original": Projections(), "rewritten": rewritten, "without fused_qkv": speed.Without(rewritten, ["fused_qkv"])}
    args = SimpleNamespace(clock="wall", repeats=2, train_repeats=None, profile=False)
    entry = speed.measure(variants, {"x": torch.randn(4, 8)}, "cpu", args)
    assert set(entry["without"]) == {"fused_qkv"}
    assert entry["per_rule"] == {}  # a switched-off variant is not a rule's own rewrite
    w = entry["without"]["fused_qkv"]
    assert set(w) == {"train_paired_over_rewritten", "forward_paired_over_rewritten", "train_over_original"}
    assert w["train_paired_over_rewritten"]["rounds"] == 2
    # the entry's keys are those the results schema allows
    allowed = set(schema.SPEED_ENTRY["properties"])
    assert set(entry) <= allowed and "without" in allowed


def test_a_switch_the_step_never_reads_is_refused(monkeypatch, capsys):
    # the optimizer's switch is read at its step, which the harness does not time
    monkeypatch.setattr("sys.argv", ["speed", "unused-dir", "--without", "fused_optimizer"])
    with pytest.raises(SystemExit):
        speed.main()
    assert "--without fused_optimizer: not a switch of what a forward and backward run" in capsys.readouterr().err
    monkeypatch.setattr("sys.argv", ["speed", "unused-dir", "--without", "fused_qkvv"])
    with pytest.raises(SystemExit):
        speed.main()
    assert "--without fused_qkvv: not a switch" in capsys.readouterr().err
