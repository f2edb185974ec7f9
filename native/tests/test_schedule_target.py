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
