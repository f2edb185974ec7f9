"""The tuner's measurer (adopt_harness.measure): failures are recorded, never timed as wins.

A fake kernel registered from a module the worker imports has schedules that crash the child,
hang it, return a wrong result or do not compile; each must come back as its status, and the
schedules after it must still be measured (the child is restarted).
"""

import json
import subprocess
import sys
import textwrap

import pytest

from adopt_harness import exhaustive, measure

FAKE = textwrap.dedent('''
    import os, time
    import torch
    from adopt_kernels import _dispatch
    from adopt_kernels.registry import KERNELS, Kernel, Space, register

    def render(schedule, dtype):
        if schedule["mode"] == "nocompile":
            return "this is not C++;\\n"
        return 'extern "C" int fake_probe(int x) { return x + 1; }\\n'

    def make_case(workload, seed=0):
        def run(schedule, backward=True):
            _dispatch.CALLS["fake"] += 1
            mode = schedule["mode"]
            if mode == "crash":
                os._exit(3)
            if mode == "hang":
                time.sleep(3600)
            if mode == "idle":  # takes wall time, not CPU time
                time.sleep(0.05)
            return (torch.ones(workload["n"]) if mode == "wrong" else torch.zeros(workload["n"]),)

        def check(outputs):
            assert torch.equal(outputs[0], torch.zeros(workload["n"])), "fake: output differs from the reference"

        return run, (lambda backward=True: (torch.zeros(workload["n"]),)), check

    if "fake" not in KERNELS:
        register(Kernel(
            name="fake", doc="a kernel for the measurer's tests", api=(), signature={}, switch="fake",
            space=Space(params={"mode": ("ok", "crash", "hang", "wrong", "nocompile", "idle")}, default={"mode": "ok"}),
            workload_fields=("n", "dtype"), render=render, make_case=make_case, dtypes=("float32",),
        ))
''')


@pytest.fixture
def fake(tmp_path, monkeypatch):
    (tmp_path / "fake_kernel_for_measure.py").write_text(FAKE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{measure.os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("ADOPT_KERNEL_CACHE", str(tmp_path / "cache"))
    yield "fake_kernel_for_measure"
    # the fake leaves the registry with its test: tests that walk every kernel take only real ones
    from adopt_kernels.registry import KERNELS

    KERNELS.pop("fake", None)
    sys.modules.pop("fake_kernel_for_measure", None)


def _request(module, modes, **extra):
    return {"op": "measure", "kernel": "fake", "workload": {"n": 4, "dtype": "float32"}, "schedules": [{"mode": m} for m in modes],
            "imports": [module], "timeout_s": 8, "repeats": 3, "warmup": 1, **extra}


def test_crash_hang_wrong_and_no_compile_are_recorded_and_later_schedules_still_run(fake):
    progress = []
    out = measure.measure(_request(fake, ["crash", "ok", "hang", "wrong", "nocompile", "ok"]), progress=progress.append)
    statuses = [r["status"] for r in out["results"]]
    assert statuses == ["crash", "ok", "timeout", "wrong", "compile_error", "ok"]
    for r in out["results"]:
        assert (r["median_s"] is not None) == (r["status"] == "ok")
    assert len(out["results"][1]["times_s"]) == 3
    assert "differs from the reference" in out["results"][3]["error"]
    assert "exit 3" in out["results"][0]["error"]
    assert [p["progress"] for p in progress] == [1, 2, 3, 4, 5, 6]
    assert progress[1]["result"]["status"] == "ok"
    assert len(out["template_hash"]) == 16


def test_the_cpu_clock_leaves_out_time_the_run_did_not_hold_the_cpu(fake):
    wall = measure.measure(_request(fake, ["idle"], clock="wall"))["results"][0]
    cpu = measure.measure(_request(fake, ["idle"], clock="cpu"))["results"][0]
    assert wall["median_s"] >= 0.05
    assert cpu["median_s"] < 0.02


def test_an_illegal_schedule_is_never_built_or_run(fake):
    out = measure.measure(_request(fake, ["nonsense"]))
    assert out["results"][0]["status"] == "compile_error"
    assert "not a legal schedule" in out["results"][0]["error"]


def test_retime_times_finalists_interleaved(fake):
    out = measure.measure(_request(fake, ["ok", "wrong"], op="retime", check=True, repeats=4))
    ok, wrong = out["results"]
    assert ok["status"] == "ok" and len(ok["times_s"]) == 4
    assert wrong["status"] == "wrong" and wrong["median_s"] is None


def test_the_worker_speaks_json_lines_and_ends_with_the_result(fake, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "adopt_harness.measure"], input=json.dumps(_request(fake, ["ok", "crash"])),
                          capture_output=True, text=True, timeout=120)
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert proc.returncode == 0, proc.stderr
    assert [line.get("progress") for line in lines[:-1]] == [1, 2]
    last = lines[-1]
    assert [r["status"] for r in last["results"]] == ["ok", "crash"]
    assert last["target"]["key"]


def test_a_timed_sample_runs_the_schedule_several_times_and_gives_the_time_of_one(fake):
    child = measure.Child({"kernel": "fake", "workload": {"n": 4, "dtype": "float32"}, "imports": [fake]})
    try:
        t0 = measure.time.perf_counter()
        answer = child.ask({"op": "run", "schedule": {"mode": "idle"}, "repeats": 2, "inner": 4, "clock": "wall"}, 30)
        elapsed = measure.time.perf_counter() - t0
    finally:
        child.stop()
    assert answer["status"] == "ok" and len(answer["times_s"]) == 2
    assert elapsed >= 2 * 4 * 0.05  # every sample ran the schedule four times
    assert all(0.05 <= t < 0.1 for t in answer["times_s"])  # and reports one run's time


def test_at_one_thread_the_openmp_schedule_is_held_at_its_default():
    kernel = measure._load_registry().KERNELS["rms_norm"]
    held = exhaustive._held_at_one_thread(kernel, 1)
    assert held == {name: kernel.space.default[name] for name in ("chunk", "omp_kind")}
    assert exhaustive._held_at_one_thread(kernel, 2) == {}


def test_a_workload_is_shrunk_along_the_first_scalable_field_in_that_order():
    kernels = measure._load_registry().KERNELS
    attention = dict(kernels["flash_attention"].example_workloads[0])
    # batch comes first among attention's fields, but the sequence is halved first
    assert kernels["flash_attention"].workload_fields.index("batch") < kernels["flash_attention"].workload_fields.index("q_len")
    assert exhaustive._shrink_field(kernels["flash_attention"], attention) == "q_len"
    assert exhaustive._shrink_field(kernels["flash_attention"], attention, prefer="batch") == "batch"
    assert exhaustive._shrink_field(kernels["rms_norm"], {"rows": 64, "n": 8, "dtype": "float32"}) == "rows"


@pytest.mark.parametrize("field, value", [("repeats", None), ("repeats", 0), ("repeats", "abc"), ("repeats", -3), ("warmup", 1.5),
                                          ("seed", "xyz"), ("timeout_s", 0), ("clock", "sundial")])
def test_a_request_no_schedule_could_be_measured_under_is_the_harness_failing_not_the_schedules(fake, field, value):
    progress = []
    with pytest.raises(measure.HarnessError, match=field):
        measure.measure(_request(fake, ["ok", "ok"], **{field: value}), progress=progress.append)
    assert progress == []  # no schedule was reported, so none is recorded as failed


def test_the_command_line_reports_a_harness_failure_as_an_error_line_not_as_results(fake):
    req = _request(fake, ["ok"], repeats=None)
    p = subprocess.run([sys.executable, "-m", "adopt_harness.measure"], input=json.dumps(req), capture_output=True, text=True, timeout=120)
    last = json.loads(p.stdout.strip().splitlines()[-1])
    assert p.returncode == 1
    assert "results" not in last
    assert "repeats" in last["error"] and "HarnessError" in last["error"]


def test_a_child_that_refuses_a_command_stops_the_batch(fake):
    results = [{"schedule": {"mode": "ok"}, "status": None, "median_s": None, "times_s": [], "error": None}]
    with pytest.raises(measure.HarnessError, match="refused"):
        measure._record(results[0], {"harness": "run command field 'repeats' must be a whole number, not None"})
    measure._record(results[0], {"status": "crash"})
    assert results[0]["error"] == "crash without a message from the run"
