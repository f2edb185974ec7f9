"""quiet_blas_threads: a pthread OpenBLAS's idle threads sleep instead of spinning.

Each case runs in a fresh interpreter (the setting is process-wide), does a matrix product, and
then, while the interpreter sleeps, samples the state of the process's other threads
(/proc/self/task/*/stat): a spinning BLAS thread is runnable (R) in nearly every sample, a
sleeping one is not. Thread states, not times, so the figures depend neither on the machine's
speed nor on its load (a spinner that yields to other processes is still runnable).
"""


import pytest
from fresh_interpreter import probe
import torch

from adopt_kernels import idle_threads

PROBE = r"""
import json, os, sys, threading, time
import torch
torch.set_num_threads(2)
import adopt_kernels
from adopt_kernels import idle_threads
a = torch.randn(512, 512, generator=torch.Generator().manual_seed(0))
before = a @ a
if sys.argv[1] == "call":
    idle_threads.quiet_blas_threads()

def runnable_others():
    n = 0
    for tid in os.listdir("/proc/self/task"):
        if int(tid) == threading.get_native_id():
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                n += f.read().rsplit(")", 1)[1].split()[0] == "R"
        except OSError:
            pass
    return n

samples = []
for _ in range(3):
    after = a @ a
    for _ in range(10):
        time.sleep(0.004)
        samples.append(runnable_others())
blas = idle_threads.openblas()
print(json.dumps({"quieted": idle_threads.quieted(), "spinning_share": sum(x > 0 for x in samples) / len(samples),
                  "same": bool(torch.equal(before, after)), "threads": blas and blas["threads"]}))
"""


def _probe(env_value=None, mode="env"):
    return probe(PROBE, mode, "ADOPT_QUIET_BLAS_THREADS", env_value, unset=("OPENBLAS_THREAD_TIMEOUT",))


_blas = idle_threads.openblas()
needs_pthread_openblas = pytest.mark.skipif(
    _blas is None or _blas["threading"] != "pthreads" or _blas["threads"] < 2,
    reason=f"needs torch linked to a pthread OpenBLAS with 2+ threads (here: {_blas})")


@needs_pthread_openblas
@pytest.mark.parametrize("how", [("1", "env"), ("on", "env"), (None, "call")])
def test_quieted_blas_threads_sleep_while_the_process_sleeps(how):
    value, mode = how
    r, _ = _probe(value, mode)
    assert r["quieted"]
    # a product's threads restarted with the new timeout: same result, same thread count
    assert r["same"] and r["threads"] == _blas["threads"]
    assert r["spinning_share"] <= 0.1, r


@needs_pthread_openblas
def test_negative_control_unquieted_blas_threads_spin_through_the_sleep():
    r, _ = _probe("0")
    assert not r["quieted"]
    # the spinning thread stays runnable while the interpreter sleeps: the quieted case's bound fails here
    assert r["spinning_share"] >= 0.6, r


def test_a_value_that_is_neither_on_nor_off_is_reported_and_ignored():
    r, err = _probe("sometimes")
    assert not r["quieted"]
    assert "ADOPT_QUIET_BLAS_THREADS='sometimes' is not 0 or 1; BLAS threads are left as they are" in err


def test_without_openblas_nothing_changes_and_it_says_so(monkeypatch, capsys):
    monkeypatch.setattr(idle_threads, "_loaded_paths", lambda marker: [])
    monkeypatch.setitem(idle_threads._state, "quieted", False)
    monkeypatch.setattr(idle_threads._dispatch, "_said", set(), raising=False)
    assert idle_threads.openblas() is None
    assert idle_threads.quiet_blas_threads() is False
    assert "no OpenBLAS is loaded" in capsys.readouterr().err
    assert idle_threads.report({})["openblas"] is None


@pytest.mark.parametrize("environ, idle", [({}, "spin"), ({"OMP_WAIT_POLICY": "PASSIVE"}, "sleep"), ({"GOMP_SPINCOUNT": "0"}, "sleep"),
                                           ({"GOMP_SPINCOUNT": "1000"}, "spin 1000"), ({"OMP_WAIT_POLICY": "active"}, "spin"),
                                           # GNU OpenMP takes GOMP_SPINCOUNT over the policy where both are set
                                           ({"OMP_WAIT_POLICY": "passive", "GOMP_SPINCOUNT": "1000000"}, "spin 1000000")])
def test_report_reads_openmp_wait_policy(environ, idle):
    assert idle_threads.report(environ)["openmp_idle"] == idle


@pytest.mark.parametrize("threading, timeout_env, idle", [("pthreads", 0, "spin"), ("pthreads", 4, "sleep"), ("pthreads", 20, "spin"),
                                                        ("openmp", 4, "as its OpenMP"), ("sequential", 0, "none")])
def test_how_each_build_waits(threading, timeout_env, idle):
    # a short timeout means nothing to a build whose threads are OpenMP's or that has none
    assert idle_threads._idle(threading, timeout_env) == idle
