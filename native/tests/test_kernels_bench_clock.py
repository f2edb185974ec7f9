"""The kernel benchmark times with the clock it is given (wall time, or the process's CPU time)."""

import time

from adopt_harness import kernels_bench


def test_interleaved_measures_with_the_given_clock():
    now = [0.0]

    def costs(seconds):
        def fn():
            now[0] += seconds
        return fn

    medians = kernels_bench.interleaved({"eager": costs(3.0), "kernel": costs(1.0)}, 5, clock=lambda: now[0])
    assert medians == {"eager": 3.0, "kernel": 1.0}


def test_clocks_offered():
    assert kernels_bench.CLOCKS == {"wall": time.perf_counter, "cpu": time.process_time}


def test_cpu_clock_is_an_option(capsys):
    # an unknown kernel stops before any timing: the option itself is what is checked
    assert kernels_bench.main(["--kernels", "no_such_kernel", "--clock", "cpu"]) == 2
    assert "unknown kernel" in capsys.readouterr().err
