"""keep_freed_memory: a freed large tensor's pages are reused, not faulted in again.

Each case runs in a fresh interpreter (the setting is process-wide and cannot be undone), and
counts minor page faults (getrusage) while a 64 MiB tensor is made and filled, then freed, six
times over: the count does not depend on the machine's speed or load. Small blocks malloc'd
between two rounds may be carved from the freed block, so the second round can still fault;
from the third on the heap holds a block that fits.
"""


import pytest
from fresh_interpreter import probe

from adopt_kernels import memory

PROBE = r"""
import json, resource, sys
import torch
import adopt_kernels
from adopt_kernels import memory
if sys.argv[1] == "call":
    memory.keep_freed_memory()

def faults_of_fill():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.empty(16 << 20)  # 64 MiB of float32: above glibc's largest mmap threshold
    t.fill_(1.0)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    del t
    return after - before

faults = [faults_of_fill() for _ in range(6)]
print(json.dumps({"kept": memory.kept(), "first": faults[0], "later": faults[2:]}))
"""


def _probe(env_value=None, mode="env"):
    return probe(PROBE, mode, "ADOPT_KEEP_FREED_MEMORY", env_value)


needs_glibc = pytest.mark.skipif(not memory.available(), reason="keep_freed_memory needs glibc's mallopt")


@needs_glibc
@pytest.mark.parametrize("how", [("1", "env"), ("yes", "env"), (None, "call")])
def test_kept_memory_is_reused_without_page_faults(how):
    value, mode = how
    r, _ = _probe(value, mode)
    assert r["kept"]
    # the first fill faults its pages in; later ones reuse a freed heap block
    assert r["first"] > 0
    assert sum(r["later"]) < r["first"] / 4, r


@needs_glibc
def test_negative_control_default_malloc_faults_every_time():
    r, _ = _probe(None)
    assert not r["kept"]
    # glibc unmapped the block on free: every fill faults its pages in again
    assert min(r["later"]) >= r["first"] / 2, r


@pytest.mark.parametrize("value", ["0", "off", ""])
def test_off_values_leave_malloc_alone(value):
    r, err = _probe(value)
    assert not r["kept"]
    assert "ADOPT_KEEP_FREED_MEMORY" not in err


def test_bad_value_is_reported_and_ignored():
    r, err = _probe("sometimes")
    assert not r["kept"]
    assert "ADOPT_KEEP_FREED_MEMORY='sometimes' is not 0 or 1" in err


def test_not_glibc_says_so_and_changes_nothing(monkeypatch, capsys):
    from adopt_kernels import _dispatch

    monkeypatch.setattr(memory, "_glibc", lambda: None)
    monkeypatch.setattr(memory, "_state", {"kept": False})
    monkeypatch.setattr(_dispatch, "_said", set())
    assert memory.keep_freed_memory() is False
    assert not memory.kept()
    assert "not glibc" in capsys.readouterr().err
