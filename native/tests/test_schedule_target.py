"""A schedule file tuned for another target: one warning naming the file and both targets, and
the defaults used; a file of this target, or one naming no target, is used as written."""

import json
import warnings

import pytest

from adopt_kernels import schedules, target
from adopt_kernels.kernels import rms_norm as K

WORKLOAD = {"rows": 4096, "n": 768, "dtype": "float32"}


@pytest.fixture(autouse=True)
def _clean():
    schedules.clear()
    yield
    schedules.clear()


def _tuned():
    legal = [s for s in K.SPACE.enumerate(WORKLOAD) if s != K.SPACE.default_at(WORKLOAD)]
    return legal[0]


def _file(tmp_path, key, name="s.json"):
    p = tmp_path / name
    t = dict(target.fingerprint("cpu"))
    if key is None:
        t = {}
    else:
        t["key"] = key
    p.write_text(json.dumps({"format": schedules.FORMAT, "target": t, "entries": [{"kernel": "rms_norm", "workload": WORKLOAD, "schedule": _tuned()}]}))
    return str(p)


def test_another_targets_file_warns_once_naming_both_and_the_defaults_run(tmp_path):
    path = _file(tmp_path, "deadbeefdeadbeef")
    here = target.fingerprint("cpu")["key"]
    with pytest.warns(schedules.ScheduleFileWarning) as caught:
        schedules.use(path)
        schedules.use(path)
    msgs = [str(w.message) for w in caught if issubclass(w.category, schedules.ScheduleFileWarning)]
    assert len(msgs) == 1
    assert path in msgs[0] and "deadbeefdeadbeef" in msgs[0] and here in msgs[0]
    assert schedules.lookup(K.KERNEL, WORKLOAD) == K.SPACE.default_at(WORKLOAD)
    d = schedules.describe(path)
    assert (d["target"], d["here"], d["entries"], d["used"]) == ("deadbeefdeadbeef", here, 1, 0)


@pytest.mark.parametrize("key", ["here", None])
def test_this_targets_file_and_a_file_naming_no_target_are_used(tmp_path, key):
    path = _file(tmp_path, target.fingerprint("cpu")["key"] if key == "here" else None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", schedules.ScheduleFileWarning)
        schedules.use(path)
    assert schedules.lookup(K.KERNEL, WORKLOAD) == _tuned()
    assert schedules.describe(path)["used"] == 1


@pytest.mark.parametrize("as_written", ["float", "bool"])
def test_a_value_of_another_type_is_illegal_and_the_default_runs(tmp_path, as_written):
    """`"unroll": 4.0` or `true` equal 4 and 1 in Python, but a schedule's values are written into
    the kernel's C++ source as they are: such an entry is illegal, said once, and not used."""
    tuned = _tuned()
    assert 1 in K.SPACE.params["unroll"]
    bad = dict(tuned, unroll=float(tuned["unroll"]) if as_written == "float" else True)
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"format": schedules.FORMAT, "target": {}, "entries": [{"kernel": "rms_norm", "workload": WORKLOAD, "schedule": bad}]}))
    assert not K.SPACE.legal(bad, WORKLOAD)
    with pytest.warns(schedules.ScheduleFileWarning):
        schedules.use(str(p))
    assert schedules.lookup(K.KERNEL, WORKLOAD) == K.SPACE.default_at(WORKLOAD)
    assert schedules.describe(str(p))["used"] == 0
