"""The decode benchmark's arguments and bookkeeping (a full run builds GPT-2 at its real size:
that is the benchmark's job, not a test's)."""

import os

import pytest

from adopt_harness import decode_bench
from adopt_kernels import _dispatch


@pytest.mark.parametrize("args, message", [
    (["DIR", "--models", "bert-base"], "unknown model(s) bert-base"),
    (["DIR", "--tokens", "1"], "--tokens must be at least 2"),
    (["DIR", "--repeats", "0"], "--repeats must be at least 1"),
])
def test_bad_arguments_are_refused(args, message, capsys):
    assert decode_bench.main(args) == 2
    assert message in capsys.readouterr().err


def test_paired_ratios_are_taken_round_by_round():
    """The model table's paired ratio (speed.paired_ratio): round by round, so a slow spell that
    hits both sides of a round leaves its ratio alone."""
    times = {"original": [1.0, 2.0, 4.0, 1.0], "rewritten": [1.1, 2.0, 4.4, 0.9]}
    got = decode_bench.paired_ratio(times, "rewritten")
    assert got["median"] == pytest.approx(1.05)  # the ratios' median; the medians' ratio is 1.55 / 1.5
    assert got["q1"] == pytest.approx(0.975) and got["q3"] == pytest.approx(1.1)
    assert got["rounds"] == 4 and got["slower_rounds"] == 2


def test_every_call_compiled_forces_the_floor_and_restores_it(monkeypatch):
    monkeypatch.delenv(_dispatch.CPU_MIN_BYTES_ENV, raising=False)
    with decode_bench.every_call_compiled(True):
        assert _dispatch.cpu_floor_override() == 0
    assert _dispatch.cpu_floor_override() is None
    with decode_bench.every_call_compiled(False):
        assert _dispatch.cpu_floor_override() is None
    assert _dispatch.CPU_MIN_BYTES_ENV not in os.environ


def test_each_model_has_a_causal_lm_class_in_transformers():
    transformers = pytest.importorskip("transformers")
    for key, cls in decode_bench.LM_CLASSES.items():
        module = decode_bench.MODELS[key][0]
        mod = __import__(f"transformers.models.{module}.modeling_{module}", fromlist=[cls])
        assert hasattr(mod, cls), (transformers.__version__, key)
