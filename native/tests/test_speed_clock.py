"""The speed harness times with the clock it is given (wall time, or the process's CPU time)."""

import statistics
import time

import pytest
import torch
from torch import nn

from adopt_harness import speed


class Ticking(nn.Module):
    """A model whose every call advances a fake clock by ``cost``."""

    def __init__(self, clock, cost):
        super().__init__()
        self.clock, self.cost = clock, cost
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        self.clock[0] += self.cost
        return x * self.w


def test_time_pair_measures_with_the_given_clock():
    now = [0.0]
    models = {"original": Ticking(now, 2.0), "rewritten": Ticking(now, 5.0)}
    inputs = {"x": torch.ones(3)}
    for train in (False, True):
        medians, _, rounds = speed.time_pair(models, inputs, "cpu", 3, train, clock=lambda: now[0])
        assert medians == {"original": 2.0, "rewritten": 5.0}
        assert rounds == {"original": [2.0] * 3, "rewritten": [5.0] * 3}  # the two warm-up rounds left out


def test_paired_ratio_follows_a_step_change_of_the_machine_that_the_medians_split():
    # another process starts during the third round and halves both sides' speed from then on:
    # the medians land on opposite sides of the change, the round-by-round ratios do not
    times = {"original": [1.0, 1.0, 1.0, 2.0, 2.0], "rewritten": [0.9, 0.9, 1.8, 1.8, 1.8]}
    assert statistics.median(times["rewritten"]) / statistics.median(times["original"]) == pytest.approx(1.8)
    paired = speed.paired_ratio(times, "rewritten")
    assert paired == {"median": pytest.approx(0.9), "q1": pytest.approx(0.9), "q3": pytest.approx(0.9), "rounds": 5}


def test_paired_ratio_quartiles_show_how_far_the_rounds_disagree():
    times = {"original": [1.0] * 5, "rewritten": [0.8, 0.9, 1.0, 1.1, 1.2]}
    paired = speed.paired_ratio(times, "rewritten")
    assert (paired["median"], paired["q1"], paired["q3"]) == pytest.approx((1.0, 0.9, 1.1))
    one = speed.paired_ratio({"original": [2.0], "rewritten": [1.0]}, "rewritten")
    assert one == {"median": 0.5, "q1": 0.5, "q3": 0.5, "rounds": 1}


def test_clocks_offered():
    assert speed.CLOCKS == {"wall": time.perf_counter, "cpu": time.process_time}


def test_rows_say_how_idle_threads_wait(monkeypatch):
    reports = [({"openblas": {"idle": "sleep"}, "openmp_idle": "spin"}, "blas sleep, openmp spin"),
               ({"openblas": None, "openmp_idle": "sleep"}, "blas none, openmp sleep")]
    for report, said in reports:
        monkeypatch.setattr(speed.idle_threads, "report", lambda report=report: report)
        assert speed.idle_threads_setting() == said


def test_rounds_alternate_which_variant_goes_first():
    # a step's time depends on what ran before it: neither side may always go first
    order = []

    class Logged(Ticking):
        def forward(self, x):
            order.append(self.name)
            return super().forward(x)

    now = [0.0]
    models = {}
    for name in ("original", "rewritten"):
        models[name] = Logged(now, 1.0)
        models[name].name = name
    speed.time_pair(models, {"x": torch.ones(3)}, "cpu", 2, False, clock=lambda: now[0])
    rounds = [tuple(order[i:i + 2]) for i in range(0, len(order), 2)]
    assert rounds == [("original", "rewritten"), ("rewritten", "original")] * 2
