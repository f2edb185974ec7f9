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
        medians, _, _ = speed.time_pair(models, inputs, "cpu", 3, train, clock=lambda: now[0])
        assert medians == {"original": 2.0, "rewritten": 5.0}


def test_time_pair_keeps_each_round_at_its_index_for_every_variant():
    # every call costs more than the one before: round i's times must sit at index i on both
    # sides, in the order they ran (the two warm-up rounds left out), for the pairing to hold
    now, calls = [0.0], [0]

    class Growing(Ticking):
        def forward(self, x):
            calls[0] += 1
            self.cost = float(calls[0])
            return super().forward(x)

    models = {"original": Growing(now, 0), "rewritten": Growing(now, 0)}
    _, _, rounds = speed.time_pair(models, {"x": torch.ones(3)}, "cpu", 4, False, clock=lambda: now[0])
    # calls 1-4 are the warm-ups; then A B (5, 6), B A (7, 8), A B (9, 10), B A (11, 12)
    assert rounds == {"original": [5.0, 8.0, 9.0, 12.0], "rewritten": [6.0, 7.0, 10.0, 11.0]}


def test_paired_ratio_follows_a_step_change_of_the_machine_that_the_medians_split():
    # another process starts in the third round, between its two steps, and halves both sides'
    # speed from then on: the medians land on opposite sides of the change, the rounds do not
    times = {"original": [1.0, 1.0, 1.0, 2.0, 2.0, 2.0], "rewritten": [0.9, 0.9, 1.8, 1.8, 1.8, 1.8]}
    assert statistics.median(times["rewritten"]) / statistics.median(times["original"]) == pytest.approx(1.2)
    paired = speed.paired_ratio(times, "rewritten")
    assert paired["median"] == pytest.approx(0.9) and (paired["q1"], paired["q3"]) == pytest.approx((0.9, 0.9))
    assert (paired["rounds"], paired["slower_rounds"]) == (6, 1)


def test_paired_ratio_pairs_each_round_with_the_same_round():
    # sorting each side before pairing would give 2.0 and 0.8
    paired = speed.paired_ratio({"original": [3.0, 1.0], "rewritten": [2.0, 2.4]}, "rewritten")
    assert paired["median"] == pytest.approx((2.0 / 3.0 + 2.4) / 2)


def test_paired_ratio_quartiles_show_how_far_the_rounds_disagree():
    times = {"original": [1.0] * 5, "rewritten": [1.2, 0.8, 1.1, 0.9, 1.0]}
    paired = speed.paired_ratio(times, "rewritten")
    # the fifth round (one order more often than the other) is left out
    assert paired["rounds"] == 4
    assert (paired["median"], paired["q1"], paired["q3"]) == pytest.approx((1.0, 0.875, 1.125))
    one = speed.paired_ratio({"original": [2.0], "rewritten": [1.0]}, "rewritten")
    assert one == {"median": 0.5, "q1": 0.5, "q3": 0.5, "rounds": 1, "slower_rounds": 0, "p_slower": 1.0}


def test_paired_ratio_sign_test_needs_every_round_of_six_to_call_it_slower():
    six = {"original": [1.0] * 6}
    every = speed.paired_ratio({**six, "rewritten": [1.01] * 6}, "rewritten")
    assert (every["slower_rounds"], every["p_slower"]) == (6, pytest.approx(1 / 64))
    five = speed.paired_ratio({**six, "rewritten": [1.3, 1.3, 1.3, 1.3, 1.3, 0.99]}, "rewritten")
    assert (five["slower_rounds"], five["p_slower"]) == (5, pytest.approx(7 / 64))


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
