"""The kernel benchmark times with the clock it is given (wall time, or the process's CPU time)."""

import json
import time

import pytest

from adopt_harness import kernels_bench


def test_interleaved_measures_with_the_given_clock():
    now = [0.0]

    def costs(seconds):
        def fn():
            now[0] += seconds
        return fn

    medians = kernels_bench.interleaved({"eager": costs(3.0), "kernel": costs(1.0)}, 5, clock=lambda: now[0])
    assert medians == {"eager": 3.0, "kernel": 1.0}


def test_a_sample_times_enough_calls_to_last_the_minimum():
    now, calls = [0.0], {"eager": 0, "kernel": 0}

    def costs(name, seconds):
        def fn():
            calls[name] += 1
            now[0] += seconds
        return fn

    ms = 2.0 ** -10  # about a millisecond, exact in binary: the fake clock's sums stay exact
    medians = kernels_bench.interleaved({"eager": costs("eager", 3 * ms), "kernel": costs("kernel", ms)}, 5,
                                        clock=lambda: now[0], min_sample_s=20 * ms)
    assert medians == {"eager": 3 * ms, "kernel": ms}
    # one warm-up call each, then 20 calls a sample (the faster variant's 1 ms into 20 ms) for both
    assert calls == {"eager": 1 + 5 * 20, "kernel": 1 + 5 * 20}


def test_clocks_offered():
    assert kernels_bench.CLOCKS == {"wall": time.perf_counter, "cpu": time.process_time}


def test_cpu_clock_is_an_option(capsys):
    # an unknown kernel stops before any timing: the option itself is what is checked
    assert kernels_bench.main(["--kernels", "no_such_kernel", "--clock", "cpu"]) == 2
    assert "unknown kernel" in capsys.readouterr().err


def test_a_workload_of_its_own_is_benched(capsys, tmp_path):
    """``--workload`` replaces the examples: T5's learned position bias at a small size, its
    gradient timed on both sides."""
    w = '{"batch": 1, "heads": 2, "q_len": 40, "k_len": 40, "head_dim": 16, "dtype": "bfloat16", "mask": "learned"}'
    out_json = tmp_path / "out.json"
    assert kernels_bench.main(["--kernels", "flash_attention", "--workload", w, "--repeats", "1", "--sample", "0", "--threads", "1",
                               "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "mask=learned" in out and '"flash_attention"' in out.splitlines()[-1]
    # the dtype it names, not --dtype's default
    assert json.loads(out_json.read_text())["detail"]["flash_attention"]["workloads"][0]["workload"]["dtype"] == "bfloat16"


def test_a_workload_needs_one_kernel_and_json(capsys):
    assert kernels_bench.main(["--kernels", "flash_attention", "--workload", "{batch: 1}"]) == 2
    assert "not JSON" in capsys.readouterr().err
    assert kernels_bench.main(["--kernels", "flash_attention,softmax", "--workload", "{}"]) == 2
    assert "exactly one kernel" in capsys.readouterr().err


def test_keep_freed_memory_is_stated_in_the_result():
    """``--keep-freed-memory`` (process-wide, so in a child interpreter) is said in the header and
    the JSON; without it the result says the system's malloc ran."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.path.join(os.path.dirname(__file__), ".."), os.environ.get("PYTHONPATH")])))
    env.pop("ADOPT_KEEP_FREED_MEMORY", None)
    w = '{"rows": 8, "n": 64, "dtype": "float32"}'
    for flag, said, malloc in ((["--keep-freed-memory"], "malloc: keeps freed memory", "kept"), ([], "malloc: the system's", "system")):
        p = subprocess.run([sys.executable, "-m", "adopt_harness.kernels_bench", "--kernels", "softmax", "--workload", w, "--repeats", "1",
                            "--sample", "0", "--threads", "1", *flag], env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        assert said in p.stdout
        assert json.loads(p.stdout.strip().splitlines()[-1])["malloc"] == malloc


@pytest.mark.parametrize("level, timed", [("avx512", True), (None, False)])
def test_the_portable_default_is_timed_beside_a_target_default(level, timed, capsys, tmp_path, monkeypatch):
    """Where a target default differs from the portable one (softmax: 512-bit vectors on AVX-512),
    both are timed and ``speedup_portable`` says the portable one's; where they are one, it is null."""
    import dataclasses

    from adopt_kernels import registry

    kernel = registry.KERNELS["softmax"]
    s = kernel.space
    space = registry.Space(params=s.params, default=s.portable_default, constraints=s.constraints, omp=s.omp,
                           target_defaults=s.target_defaults, level=level)
    assert (space.default != space.portable_default) == timed
    monkeypatch.setitem(registry.KERNELS, "softmax", dataclasses.replace(kernel, space=space))
    out_json = tmp_path / "out.json"
    assert kernels_bench.main(["--kernels", "softmax", "--workload", '{"rows": 8, "n": 64, "dtype": "float32"}', "--repeats", "1",
                               "--sample", "0", "--threads", "1", "--json", str(out_json)]) == 0
    assert "x port" in capsys.readouterr().out
    row = json.loads(out_json.read_text())["detail"]["softmax"]["workloads"][0]
    assert (row["speedup_portable"] is not None) == timed
    assert row["speedup_portable"] is None or row["speedup_portable"] > 0
