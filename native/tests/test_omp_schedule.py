"""The OpenMP schedule as a call-time part of a kernel's schedule (Space.omp): one build serves
every kind and chunk, each call runs under its own, and the caller's schedule is left as it was."""

import ctypes

import pytest

from adopt_kernels import _build, _dispatch, registry
from adopt_kernels.kernels import rms_norm as K
from adopt_kernels.registry import Space

# reports the OpenMP schedule that `schedule(runtime)` loops would use in the calling thread
PROBE = r"""
extern "C" void adopt_omp_probe(int* kind, int* chunk) {
  omp_sched_t k; omp_get_schedule(&k, chunk); *kind = (int)k;
}
"""


def _current(lib):
    kind, chunk = ctypes.c_int(), ctypes.c_int()
    lib.omp_get_schedule(ctypes.byref(kind), ctypes.byref(chunk))
    return kind.value, chunk.value


def test_schedules_that_differ_only_in_their_openmp_schedule_share_one_source():
    a = dict(K.SPACE.default, omp_kind="static", chunk=1)
    b = dict(K.SPACE.default, omp_kind="guided", chunk=64)
    assert K.KERNEL.source(a, "float32") == K.KERNEL.source(b, "float32")
    assert K.KERNEL.source(dict(a, unroll=8), "float32") != K.KERNEL.source(a, "float32")


def test_a_call_runs_under_its_schedule_and_restores_the_callers():
    lib = _build.load(PROBE)
    before = _current(lib)
    probe = _dispatch.OmpScheduled(lib.adopt_omp_probe, lib, registry.OMP_KINDS["guided"], 32)
    kind, chunk = ctypes.c_int(), ctypes.c_int()
    probe(ctypes.byref(kind), ctypes.byref(chunk))
    assert (kind.value, chunk.value) == (registry.OMP_KINDS["guided"], 32)
    assert _current(lib) == before


def test_the_dispatcher_wraps_kernels_with_a_call_time_schedule_only():
    schedule = dict(K.SPACE.default, omp_kind="dynamic", chunk=8)
    fn = _dispatch.function(K.KERNEL, "rms_norm_fwd", "float32", {"rows": 4, "n": 8}, schedule)
    assert isinstance(fn, _dispatch.OmpScheduled) and (fn.kind.value, fn.chunk.value) == (2, 8)
    assert K.SPACE.omp_schedule(schedule) == (2, 8)
    assert Space(params={"a": (1, 2)}, default={"a": 1}).omp_schedule({"a": 2}) is None


@pytest.mark.parametrize("omp", [{"kind": "missing"}, {"order": "a"}])
def test_an_openmp_role_must_name_a_parameter(omp):
    with pytest.raises(ValueError, match="omp"):
        Space(params={"a": (1, 2)}, default={"a": 1}, omp=omp)


def test_an_openmp_kind_must_be_one_openmp_knows():
    with pytest.raises(ValueError, match="OpenMP kind"):
        Space(params={"k": ("static", "fastest")}, default={"k": "static"}, omp={"kind": "k"})
