"""blas_core: an OpenBLAS that picked narrower kernels than the CPU allows is switched to the
CPU's own, and products stay right.

The switching cases run in a fresh interpreter whose OpenBLAS is made to load the generic
Prescott kernels (``OPENBLAS_CORETYPE`` at load, dropped from the environment before the switch,
so the library looks as if it picked them itself): the situation of a CPU it does not know.
"""

import pytest
from fresh_interpreter import probe
import torch  # noqa: F401  (loads the BLAS the report inspects)

from adopt_kernels import blas_core, target

PROBE = r"""
import json, os, sys
import torch
torch.set_num_threads(2)
os.environ.pop("OPENBLAS_CORETYPE", None)  # as if the library had picked its core itself
import adopt_kernels
from adopt_kernels import blas_core
g = torch.Generator().manual_seed(0)
a, b = torch.randn(300, 200, generator=g), torch.randn(200, 170, generator=g)
before = blas_core.report()
if sys.argv[1] == "call":
    blas_core.match()
after = blas_core.report()
exact = a.double() @ b.double()
err = float((a @ b - exact).abs().max() / exact.abs().max())
print(json.dumps({"before": before, "after": after, "matched": blas_core.matched(), "error": err,
                  "setting": blas_core.setting()}))
"""

_report = blas_core.report()
_lib = blas_core._library()
_want = _lib and blas_core.wanted_core(target.cpu_identity()["flags"], target.cpu_identity()["vendor"], blas_core._has_core(_lib[1]))
needs_switchable = pytest.mark.skipif(
    _report is None or _want is None,
    reason=f"needs a DYNAMIC_ARCH OpenBLAS (here: {_report}) on a CPU with AVX or wider (wanted core: {_want})")


def _probe(mode, env_value=None, script=PROBE):
    # the library loads Prescott's kernels; ADOPT_BLAS_CORE is the variable under test
    return probe(script, mode, "ADOPT_BLAS_CORE", env_value, also={"OPENBLAS_CORETYPE": "Prescott"})


@needs_switchable
def test_a_generic_core_is_reported_with_the_core_the_cpu_calls_for():
    out, _ = _probe("none")
    assert out["before"]["core"] == "Prescott"
    assert out["before"]["wanted"] is not None and out["before"]["chosen_by"] == "library"
    assert out["after"] == out["before"] and out["matched"] is False
    assert "this CPU suits" in out["setting"]


@needs_switchable
def test_match_switches_to_the_wanted_core_and_products_stay_right():
    out, _ = _probe("call")
    assert out["after"]["core"] == out["before"]["wanted"]
    assert out["after"]["wanted"] is None and out["after"]["chosen_by"] == "adopt"
    assert out["matched"] is True and "matched to the CPU" in out["setting"]
    assert out["error"] < 1e-5


@needs_switchable
def test_the_environment_variable_matches_at_import():
    out, _ = _probe("none", "1")
    assert out["before"]["core"] == out["after"]["core"] != "Prescott"
    assert out["matched"] is True


@needs_switchable
def test_a_core_the_user_set_is_left_alone():
    # the variable stays in the environment this time: the user chose Prescott
    out, err = _probe("call", script=PROBE.replace('os.environ.pop("OPENBLAS_CORETYPE", None)', "pass"))
    assert out["after"]["core"] == "Prescott" and out["after"]["chosen_by"] == "OPENBLAS_CORETYPE"
    assert out["matched"] is False
    assert "left as set" in err


@pytest.mark.parametrize("flags, vendor, has, want", [
    ({"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16"}, "GenuineIntel", None, "Cooperlake"),
    ({"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16"}, "GenuineIntel", {"SkylakeX"}, "SkylakeX"),
    ({"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"}, "GenuineIntel", None, "SkylakeX"),
    # AVX-512 without BW and VL (Knights Landing) is not SkylakeX's
    ({"avx", "avx2", "fma", "avx512f"}, "GenuineIntel", None, "Haswell"),
    # a library built without AVX-512 kernels: the next level down
    ({"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"}, "GenuineIntel", {"Haswell", "Sandybridge"}, "Haswell"),
    ({"avx", "avx2", "fma"}, "AuthenticAMD", None, "Zen"),
    ({"avx", "avx2", "fma"}, "GenuineIntel", None, "Haswell"),
    ({"avx"}, "GenuineIntel", None, "Sandybridge"),
    ({"sse3"}, "GenuineIntel", None, None),
    ({"avx"}, "GenuineIntel", set(), None),
])
def test_the_wanted_core_follows_the_instruction_set(flags, vendor, has, want):
    assert blas_core.wanted_core(flags, vendor, lambda name: has is None or name in has) == want


def test_no_openblas_means_nothing_to_match(monkeypatch):
    monkeypatch.setattr(blas_core.idle_threads, "_loaded_paths", lambda marker: [])
    monkeypatch.setattr(blas_core._dispatch, "_said", set(), raising=False)
    assert blas_core.report() is None
    assert blas_core.match() is None
    assert blas_core.setting() == "no OpenBLAS"


def test_the_benchmarks_match_the_core_unless_told_not_to(monkeypatch):
    import argparse

    from adopt_harness import blas_setting

    calls = []
    monkeypatch.setattr(blas_setting.blas_core, "match", lambda: calls.append("match"))
    monkeypatch.setattr(blas_setting.blas_core, "setting", lambda: "OpenBLAS Haswell")
    p = argparse.ArgumentParser()
    blas_setting.add_option(p)
    assert blas_setting.apply(p.parse_args([])) == "OpenBLAS Haswell" and calls == ["match"]
    assert blas_setting.apply(p.parse_args(["--blas-core", "as-loaded"])) == "OpenBLAS Haswell" and calls == ["match"]


def test_as_loaded_refuses_a_core_already_matched_at_import(monkeypatch):
    import argparse

    from adopt_harness import blas_setting

    monkeypatch.setitem(blas_core._state, "matched", True)
    p = argparse.ArgumentParser()
    blas_setting.add_option(p)
    with pytest.raises(SystemExit, match="ADOPT_BLAS_CORE=1 matched the core"):
        blas_setting.apply(p.parse_args(["--blas-core", "as-loaded"]))
