"""The build cache, the registry's schedule spaces, schedule files and the dispatcher's
fallbacks: what every compiled kernel relies on."""

import json
import os
import random
import re
import shutil
import subprocess
import sys

import pytest
import torch

from adopt_kernels import _build, _dispatch, registry, schedules, target
from adopt_kernels.kernels import rms_norm as K
from adopt_kernels.registry import Space

SOURCE = 'extern "C" int adopt_probe(int x) { return x + 1; }\n'


def test_a_build_is_cached_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("ADOPT_KERNEL_CACHE", str(tmp_path))
    path = _build.build(SOURCE)
    assert path.startswith(str(tmp_path)) and path.endswith(".so")
    mtime = (tmp_path / path.rsplit("/", 1)[1]).stat().st_mtime_ns
    assert _build.build(SOURCE) == path
    assert (tmp_path / path.rsplit("/", 1)[1]).stat().st_mtime_ns == mtime
    assert _build.build(SOURCE + "// another\n") != path
    # nothing half-written is left beside the libraries
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".so", ".so"]


def test_a_compile_error_names_the_compiler_and_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("ADOPT_KERNEL_CACHE", str(tmp_path))
    with pytest.raises(_build.KernelBuildError, match="failed on a generated kernel"):
        _build.build("this is not C++;\n")
    assert list(tmp_path.iterdir()) == []


def test_a_compiler_command_with_arguments_builds(tmp_path, monkeypatch):
    monkeypatch.setenv("ADOPT_KERNEL_CACHE", str(tmp_path))
    wrap = tmp_path / "wrap"
    wrap.write_text('#!/bin/sh\nexec "$@"\n')
    wrap.chmod(0o755)
    for cxx in ("g++ -O0", f"{wrap} g++"):
        monkeypatch.setenv("CXX", cxx)
        assert _build.compiler_problem(cxx) is None
        path = _build.build(SOURCE)
        assert path.endswith(".so")
    # each command is its own cache entry: its flags may change the code
    assert len(list(tmp_path.glob("*.so"))) == 2
    # a compiler whose path has a space in it is still one word
    spaced = tmp_path / "my tools"
    spaced.mkdir()
    (spaced / "g++").symlink_to(shutil.which("g++"))
    assert _build.compiler_argv(str(spaced / "g++")) == [str(spaced / "g++")]
    assert _build.compiler_problem(str(spaced / "g++")) is None


@pytest.mark.parametrize("cxx, why", [
    ("/nonexistent/g++", "'/nonexistent/g++' is not an executable on PATH"),
    ("nosuch -O2", "'nosuch' (the command of $CXX='nosuch -O2') is not an executable on PATH"),
    ("g++ '-O2", "does not split into a command: No closing quotation"),
    ("   ", "names no command"),
])
def test_a_compiler_that_cannot_run_says_why(cxx, why, tmp_path, monkeypatch):
    monkeypatch.setenv("ADOPT_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", cxx)
    assert why in _build.compiler_problem(cxx)
    with pytest.raises(_build.CompilerUnavailable, match=re.escape(why)):
        _build.build(SOURCE)


def test_a_cache_path_that_is_not_a_directory_is_named(tmp_path, monkeypatch):
    f = tmp_path / "file"
    f.write_text("")
    monkeypatch.setenv("ADOPT_KERNEL_CACHE", str(f))
    with pytest.raises(_build.CacheUnusable, match="is not a directory"):
        _build.cache_dir()
    monkeypatch.setenv("ADOPT_KERNEL_CACHE", str(f / "sub"))
    with pytest.raises(_build.CacheUnusable, match="cannot be made"):
        _build.cache_dir()
    from adopt_kernels import cli

    for command in ("status", "build"):
        out = subprocess.run([sys.executable, "-m", "adopt_kernels.cli", command, "--kernels", "softmax"],
                             capture_output=True, text=True, env=dict(os.environ, ADOPT_KERNEL_CACHE=str(f)))
        assert out.returncode == 2, out.stderr
        assert json.loads(out.stdout.splitlines()[-1]) == {"command": command, "ok": False, "error": f"the kernel cache $ADOPT_KERNEL_CACHE={f} is not a directory"}
    assert cli.main(["status"]) == 2


def test_a_missing_compiler_is_reported_and_the_reference_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ADOPT_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    monkeypatch.setattr(_dispatch, "_said", set())
    _dispatch.forget()
    try:
        assert K.rms_norm(torch.randn(3, 8), None, 1e-6) is None
        assert "no C++ compiler" in capsys.readouterr().err
        # the public API still answers, through the torch formulation
        import adopt_kernels as ak

        x = torch.randn(3, 8)
        torch.testing.assert_close(ak.rms_norm(x, None, 1e-6), x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
    finally:
        _dispatch.forget()


def test_a_failing_tuned_schedule_falls_back_to_the_default(monkeypatch, capsys):
    broken = dict(K.SPACE.default, unroll=8)
    real = K._render

    def render(schedule, dtype):  # sees the compiled part of a schedule
        src = real(schedule, dtype)
        return src + "\n#error deliberately broken\n" if schedule == K.SPACE.compiled(broken) else src

    monkeypatch.setattr(K.KERNEL, "render", render)
    monkeypatch.setattr(_dispatch, "_said", set())
    _dispatch.forget()
    try:
        fn = _dispatch.function(K.KERNEL, "rms_norm_fwd", torch.float32, {"rows": 2, "n": 4}, broken)
        assert fn is not None
        assert "failed to build" in capsys.readouterr().err
    finally:
        monkeypatch.undo()
        _dispatch.forget()


def test_a_target_default_that_fails_to_build_falls_back_to_the_portable_one(monkeypatch, capsys):
    space = K.SPACE
    wide = Space(params=space.params, default=space.portable_default, omp=space.omp,
                 target_defaults={"avx512": {"vec_bits": 128}}, level="avx512")
    real = K._render

    def render(schedule, dtype):
        src = real(schedule, dtype)
        return src + "\n#error deliberately broken\n" if schedule["vec_bits"] == 128 else src

    monkeypatch.setattr(K.KERNEL, "space", wide)
    monkeypatch.setattr(K.KERNEL, "render", render)
    monkeypatch.setattr(_dispatch, "_said", set())
    schedules.clear()
    _dispatch.forget()
    try:
        fn = _dispatch.function(K.KERNEL, "rms_norm_fwd", torch.float32, {"rows": 2, "n": 4})
        assert fn is not None
        err = capsys.readouterr().err
        assert "failed to build" in err and "'vec_bits': 256" in err.split("using the default", 1)[1]
    finally:
        monkeypatch.undo()
        _dispatch.forget()


SPACE = Space(params={"block": (8, 16, 32, 64), "vec": (4, 8)}, default={"block": 16, "vec": 8},
              constraints=("block % vec == 0", "block <= n"))


def test_space_enumerates_only_legal_schedules():
    got = list(SPACE.enumerate({"n": 16}))
    assert {(s["block"], s["vec"]) for s in got} == {(8, 4), (8, 8), (16, 4), (16, 8)}
    assert not SPACE.legal({"block": 64, "vec": 8}, {"n": 16})
    assert not SPACE.legal({"block": 12, "vec": 4}, {"n": 64})
    assert not SPACE.legal({"block": 16}, {"n": 64})


def test_sample_and_mutate_stay_legal():
    rng = random.Random(1)
    for _ in range(50):
        s = SPACE.sample(rng, {"n": 32})
        assert SPACE.legal(s, {"n": 32})
        assert SPACE.legal(SPACE.mutate(s, rng, {"n": 32}), {"n": 32})


def test_legalise_carries_a_schedule_to_another_shape():
    # from a large shape to one where block 64 is illegal: the nearest legal block
    assert SPACE.legalise({"block": 64, "vec": 4}, {"n": 32}) == {"block": 32, "vec": 4}
    # a value the space does not have snaps to the nearest one
    assert SPACE.legalise({"block": 48, "vec": 8}, {"n": 64}) in ({"block": 32, "vec": 8}, {"block": 64, "vec": 8})
    # nothing is legal for n=4: the default
    assert SPACE.legalise({"block": 8, "vec": 8}, {"n": 4}) == SPACE.default


def test_legalise_gives_back_a_schedule_legal_at_the_workload_as_the_walk_over_the_space_would():
    from adopt_kernels import kernels as _kernels  # noqa: F401  (registers them)
    rng = random.Random(7)
    for kernel in registry.KERNELS.values():
        w = dict(kernel.example_workloads[0])
        for s in [kernel.space.sample(rng, w) for _ in range(3)] + [dict(kernel.space.default)]:
            if not kernel.space.legal(s, w):
                continue
            assert kernel.space.legalise(s, w) == s, kernel.name
            # the walk: nothing legal is nearer than the schedule itself
            nearest = min(kernel.space.enumerate(w), key=lambda c: (sum(c[k] != s[k] for k in s), c != s))
            assert nearest == s, kernel.name


def test_constraints_reject_anything_but_arithmetic():
    with pytest.raises(ValueError):
        registry.check_constraint("__import__('os')", {})
    with pytest.raises(KeyError):
        registry.check_constraint("unknown < 3", {})


def test_a_default_outside_its_space_is_refused():
    with pytest.raises(ValueError):
        Space(params={"block": (8, 16)}, default={"block": 32})


def test_a_target_default_applies_on_its_vector_level_only():
    params = {"vec_bits": (128, 256, 512), "block": (8, 16)}
    kw = dict(params=params, default={"vec_bits": 256, "block": 8}, target_defaults={"avx512": {"vec_bits": 512}})
    assert Space(**kw, level="avx512").default == {"vec_bits": 512, "block": 8}
    assert Space(**kw, level="avx2").default == {"vec_bits": 256, "block": 8}
    wide = Space(**kw, level="avx512")
    # the JSON the TypeScript side reads is the same on every machine
    assert wide.to_json()["default"] == {"vec_bits": 256, "block": 8}
    assert wide.to_json()["target_defaults"] == {"avx512": {"vec_bits": 512}}
    assert wide.portable_default == Space(**kw, level="avx2").default
    with pytest.raises(ValueError, match="levels are"):
        Space(params=params, default={"vec_bits": 256, "block": 8}, target_defaults={"sse": {"vec_bits": 128}})
    with pytest.raises(ValueError, match="default on avx512 vec_bits=1024 is not among"):
        Space(params=params, default={"vec_bits": 256, "block": 8}, target_defaults={"avx512": {"vec_bits": 1024}})
    assert Space(**kw, level=None).default == {"vec_bits": 256, "block": 8}
    with pytest.raises(ValueError, match="level 'avx9'"):
        Space(**kw, level="avx9")


@pytest.mark.parametrize("flags, level", [({"avx", "avx2", "fma", "avx512f"}, "avx512"), ({"avx", "avx2"}, "avx2"), ({"sse4_2"}, None)])
def test_the_vector_level_follows_the_flags(flags, level):
    assert target.vector_level(flags) == level


def test_the_machines_default_is_its_levels():
    space = registry.KERNELS["flash_attention"].space
    wide = "avx512f" in target.cpu_identity()["flags"]
    assert space.default["vec_bits"] == (512 if wide else 256)
    assert space.portable_default["vec_bits"] == 256


def test_the_registry_exports_as_json():
    out = subprocess.run([sys.executable, "-m", "adopt_kernels.cli", "registry"], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    assert data["format"] == "adopt-kernel-registry/1"
    rms = data["kernels"]["rms_norm"]
    assert rms["space"]["default"] == K.SPACE.portable_default  # the file reads the same on every machine
    assert "rms_norm" in data["switches"] and "native" in data["switches"]
    for kernel in data["kernels"].values():
        assert set(kernel["space"]["default"]) == set(kernel["space"]["params"])


def _schedule_file(tmp_path, entries, fmt=schedules.FORMAT):
    p = tmp_path / "schedules.json"
    p.write_text(json.dumps({"format": fmt, "target": {}, "entries": entries}))
    return str(p)


@pytest.fixture
def fresh_schedules():
    schedules.clear()
    yield
    schedules.clear()


def test_a_schedule_file_is_used_exactly_and_by_nearest_workload(tmp_path, fresh_schedules):
    tuned = dict(K.SPACE.default, chunk=4, unroll=4)
    schedules.use(_schedule_file(tmp_path, [{"kernel": "rms_norm", "workload": {"rows": 4096, "n": 768, "dtype": "float32"}, "schedule": tuned}]))
    assert schedules.lookup(K.KERNEL, {"rows": 4096, "n": 768, "dtype": "float32"}) == tuned
    assert schedules.lookup(K.KERNEL, {"rows": 2048, "n": 768, "dtype": "float32"}) == tuned
    # another dtype is not a near neighbour
    assert schedules.lookup(K.KERNEL, {"rows": 4096, "n": 768, "dtype": "bfloat16"}) == K.SPACE.default


def test_a_module_path_loads_the_schedule_file_beside_it(tmp_path, fresh_schedules):
    tuned = dict(K.SPACE.default, chunk=4, unroll=4)
    (tmp_path / schedules.SCHEDULE_FILE).write_text(json.dumps({"format": schedules.FORMAT, "target": {}, "entries": [
        {"kernel": "rms_norm", "workload": {"rows": 64, "n": 96, "dtype": "float32"}, "schedule": tuned}]}))
    schedules.use(str(tmp_path / "modeling_x.py"))
    assert schedules.lookup(K.KERNEL, {"rows": 64, "n": 96, "dtype": "float32"}) == tuned
    # a module copied without its schedule file runs the defaults, silently
    schedules.use(str(tmp_path / "elsewhere" / "modeling_y.py"))


def test_a_schedule_written_before_a_parameter_existed_keeps_its_tuned_values(tmp_path, fresh_schedules):
    new = next(iter(K.SPACE.params))
    tuned = {k: v for k, v in dict(K.SPACE.default, unroll=4).items() if k != new}
    workload = {"rows": 64, "n": 96, "dtype": "float32"}
    with pytest.warns(schedules.ScheduleFileWarning, match=f"predates its parameter.*{new}"):
        schedules.use(_schedule_file(tmp_path, [{"kernel": "rms_norm", "workload": workload, "schedule": tuned}]))
    assert schedules.lookup(K.KERNEL, workload) == dict(tuned, **{new: K.SPACE.default[new]})


@pytest.mark.parametrize("name, workload", [
    ("gated_act", {"rows": 64, "n": 128, "act": "silu", "dtype": "bfloat16"}),  # a block wider than twice the row
    ("layer_norm", {"rows": 64, "n": 64, "dtype": "bfloat16"}),  # a row too short for the default's warps
    ("rope", {"batch": 1, "heads": 4, "kv_heads": 4, "seq": 16, "dim": 256, "interleaved": 0, "dtype": "bfloat16"}),
])
def test_a_default_the_workload_forbids_is_legalised(name, workload, fresh_schedules):
    space = registry.KERNELS[name].cuda_space
    assert not space.legal(space.default, workload)  # else this case tests nothing
    got = schedules.lookup(registry.KERNELS[name], workload, device="cuda")
    assert space.legal(got, workload)
    assert got == space.legalise(space.default, workload)
    # where the default is legal it is taken as it is
    big = dict(workload, **{"n": 4096} if "n" in workload else {"dim": 128})
    assert schedules.lookup(registry.KERNELS[name], big, device="cuda") == space.default


def test_compiled_calls_are_counted_per_workload():
    import adopt_kernels

    x = torch.randn(6, 40)
    before = dict(_dispatch.WORKLOADS)
    adopt_kernels.rms_norm(x, torch.ones(40), 1e-6)
    key = ("rms_norm", (("dtype", "float32"), ("n", 40), ("rows", 6)))
    assert _dispatch.WORKLOADS[key] > before.get(key, 0)


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot read schedule file"),
    (json.dumps({"format": "something-else", "entries": []}), "not an adopt schedule file"),
    (json.dumps({"format": schedules.FORMAT, "entries": [{"kernel": "no_such_kernel", "workload": {}, "schedule": {}}]}), "unknown kernel"),
    (json.dumps({"format": schedules.FORMAT, "entries": [{"kernel": "rms_norm", "workload": {"rows": 1, "n": 8, "dtype": "float32"}, "schedule": {"chunk": 3}}]}), "not legal"),
])
def test_a_bad_schedule_file_warns_and_keeps_the_default(tmp_path, fresh_schedules, content, message):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.warns(schedules.ScheduleFileWarning, match=message):
        schedules.use(str(p))
    assert schedules.lookup(K.KERNEL, {"rows": 1, "n": 8, "dtype": "float32"}) == K.SPACE.default


def test_the_target_fingerprint_names_this_machine():
    t = target.fingerprint("cpu")
    assert t["device"] == "cpu" and t["cores"] >= 1 and t["torch"] == torch.__version__ and len(t["key"]) == 16
    assert target.fingerprint("cpu")["key"] == t["key"]


def test_the_shipped_registry_json_is_current():
    """The TypeScript side reads registry.json; regenerate it with
    ``python -m adopt_kernels.cli registry > native/adopt_kernels/registry.json``."""
    import os

    shipped = os.path.join(os.path.dirname(registry.__file__), "registry.json")
    with open(shipped) as f:
        assert json.load(f) == json.loads(json.dumps(registry.to_json())), "registry.json is stale: regenerate it"
