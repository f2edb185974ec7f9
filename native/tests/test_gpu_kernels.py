"""Each Triton kernel against its float64 reference, forward and gradients, at odd shapes and a
sample of its GPU schedule space: on a CUDA device where there is one, else in Triton's
interpreter on the CPU (the same kernels, run as numpy). A negative control per kernel shows
the check fails for a deliberately wrong output."""

import os
import random
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAVE_CUDA = torch.cuda.is_available()
if not HAVE_CUDA:
    # must be set before Triton decorates the kernels
    os.environ["TRITON_INTERPRET"] = "1"
    sys.path.append(os.path.join(ROOT, ".cache", "triton"))

triton = pytest.importorskip("triton", reason="Triton is not installed (scripts/setup-python.sh --hf installs it)")

from adopt_kernels import _dispatch, gpu, registry  # noqa: E402
from adopt_kernels import kernels as _kernels  # noqa: E402,F401

DEVICE = "cuda" if HAVE_CUDA else "cpu"
GPU_KERNELS = sorted(k for k, v in registry.KERNELS.items() if v.cuda_space is not None)
SAMPLED = 2  # schedules besides the default, per workload


@pytest.fixture(autouse=True)
def _triton_path(monkeypatch):
    if not HAVE_CUDA:
        monkeypatch.setenv("ADOPT_TRITON_INTERPRET", "1")


def _cases():
    for name in GPU_KERNELS:
        kernel = registry.KERNELS[name]
        mod = _module(kernel)
        for w in mod.TEST_WORKLOADS:
            rng = random.Random(f"{name}{sorted(w.items())}")
            schedules = [dict(kernel.cuda_space.default)]
            for _ in range(20):
                s = kernel.cuda_space.sample(rng, w)
                if s not in schedules:
                    schedules.append(s)
                if len(schedules) > SAMPLED:
                    break
            for s in schedules:
                yield pytest.param(name, w, s, id=f"{name}-{'-'.join(str(v) for v in w.values())}-{'-'.join(str(v) for v in s.values())}")


def _module(kernel):
    """The kernel's Triton module (importable here only with the interpreter switched on)."""
    saved = os.environ.get("ADOPT_TRITON_INTERPRET")
    if not HAVE_CUDA:
        os.environ["ADOPT_TRITON_INTERPRET"] = "1"
    try:
        return gpu.module(kernel)
    finally:
        if saved is None:
            os.environ.pop("ADOPT_TRITON_INTERPRET", None)


@pytest.mark.parametrize("name,workload,schedule", list(_cases()))
def test_matches_reference(name, workload, schedule):
    kernel = registry.KERNELS[name]
    run, _eager, check = kernel.make_case(workload, seed=1, device=DEVICE)
    before = _dispatch.CALLS[name]
    check(run(schedule))
    assert _dispatch.CALLS[name] > before, "the Triton kernel did not run (the reference answered)"


@pytest.mark.parametrize("name", GPU_KERNELS)
def test_negative_control(name, monkeypatch):
    """A kernel whose output is off by 1% fails the same check."""
    kernel = registry.KERNELS[name]
    mod = _module(kernel)
    for entry in mod.ENTRIES:
        real = getattr(mod, entry)

        def wrong(*args, _real=real, **kwargs):
            out = _real(*args, **kwargs)
            return tuple(o * 1.01 for o in out) if isinstance(out, tuple) else out * 1.01

        monkeypatch.setattr(mod, entry, wrong)
    run, _eager, check = kernel.make_case(mod.TEST_WORKLOADS[0], seed=1, device=DEVICE)
    with pytest.raises(AssertionError):
        check(run(dict(kernel.cuda_space.default)))


def test_small_cuda_calls_run_torchs_kernels_unless_asked(monkeypatch):
    """Below the size floor the launch costs more than the fusion saves: the caller's torch path
    runs; above it, or with the floor at 0, the Triton kernel does."""
    kernel = registry.KERNELS["rms_norm"]
    run, _eager, check = kernel.make_case({"rows": 8, "n": 64, "dtype": "float32"}, seed=1, device=DEVICE)
    monkeypatch.delenv("ADOPT_TRITON_MIN_BYTES")
    before = _dispatch.CALLS["rms_norm"]
    assert kernel.gpu_min_bytes is None and _dispatch.GPU_MIN_BYTES > 8 * 64 * 4 * 2
    assert not _dispatch.worth_a_launch(kernel, {"rows": 8, "n": 64, "dtype": "float32"})
    monkeypatch.setattr(_dispatch, "GPU_MIN_BYTES", 1024)
    check(run(dict(kernel.cuda_space.default)))
    assert _dispatch.CALLS["rms_norm"] > before
    monkeypatch.setenv("ADOPT_TRITON_MIN_BYTES", str(1 << 30))
    assert not _dispatch.worth_a_launch(kernel, {"rows": 8, "n": 64, "dtype": "float32"})


@pytest.mark.parametrize("name", GPU_KERNELS)
def test_the_routing_gives_the_size_floor_what_it_needs(name, monkeypatch):
    """The floor reads the kernel's bytes_moved from the workload the routing passes: a field it
    lacks would launch every call, however small."""
    kernel = registry.KERNELS[name]
    seen = []
    real = _dispatch.gpu_function

    def spy(k, symbol, dtype, workload, schedule=None):
        seen.append((k, dict(workload, dtype=_dispatch._GPU_DTYPES[dtype])))
        return real(k, symbol, dtype, workload, schedule)

    monkeypatch.setattr(_dispatch, "gpu_function", spy)
    run, _eager, _check = kernel.make_case(_module(kernel).TEST_WORKLOADS[0], seed=1, device=DEVICE)
    run(dict(kernel.cuda_space.default))
    assert seen, "the routing did not ask the dispatcher"
    for k, workload in seen:
        if k.bytes_moved is not None:
            assert k.bytes_moved(workload) > 0


def test_a_kernel_that_cannot_launch_hands_its_calls_back(monkeypatch):
    """A first launch that fails (no host compiler for Triton's launcher, an old GPU) switches the
    kernel off with one message and its caller runs the torch path; an in-place kernel's error
    stands, since its work cannot be handed back."""
    kernel = registry.KERNELS["rms_norm"]
    mod = _module(kernel)
    monkeypatch.setattr(_dispatch, "_LAUNCHED", set())
    monkeypatch.setattr(gpu, "_unavailable", dict(gpu._unavailable))
    monkeypatch.setattr(gpu, "_modules", dict(gpu._modules))

    def broken(*args, **kwargs):
        raise RuntimeError("Failed to find C compiler")

    monkeypatch.setattr(mod, "rms_norm", broken)
    from adopt_kernels.kernels import rms_norm as cpu_module

    x = torch.randn(4, 32, device=DEVICE)
    assert cpu_module.rms_norm(x, torch.ones(32, device=DEVICE), 1e-6) is None
    assert "rms_norm" in gpu._unavailable
    assert _dispatch.gpu_function(kernel, "rms_norm", x.dtype, {"rows": 4, "n": 32}) is None

    adam = registry.KERNELS["adamw"]
    amod = _module(adam)
    monkeypatch.setattr(amod, "apply_step", broken)
    fn = _dispatch.gpu_function(adam, "apply_step", torch.float32, {"params": 32, "tensors": 1})
    with pytest.raises(RuntimeError, match="C compiler"):
        fn([x], [x], [x], [x], [1], 1e-3, (0.9, 0.999), 1e-8, 0.0, 0)


def test_a_schedule_the_device_refuses_is_remembered_counted_and_replaced(monkeypatch):
    """Too much shared memory, say: the default runs instead, FALLBACKS counts it (the measurers
    record such a schedule as a compile error), and later bindings go straight to the default."""
    kernel = registry.KERNELS["rms_norm"]
    mod = _module(kernel)
    monkeypatch.setattr(_dispatch, "_FAILED_SCHEDULES", set())
    default = dict(kernel.cuda_space.default)
    other = dict(default, rows=next(r for r in kernel.cuda_space.params["rows"] if r != default["rows"]))
    real, seen = mod.rms_norm, []

    class OutOfResources(Exception):
        pass

    def picky(*args, schedule, **kwargs):
        seen.append(schedule)
        if schedule != default:
            raise OutOfResources("out of resource: shared memory")
        return real(*args, schedule=schedule, **kwargs)

    monkeypatch.setattr(mod, "rms_norm", picky)
    x, w = torch.randn(4, 32, device=DEVICE), torch.ones(32, device=DEVICE)
    before = _dispatch.FALLBACKS["rms_norm"]
    _dispatch.gpu_function(kernel, "rms_norm", x.dtype, {"rows": 4, "n": 32}, other)(x, w, 1e-6, 0.0)
    assert seen == [other, default] and _dispatch.FALLBACKS["rms_norm"] == before + 1
    _dispatch.gpu_function(kernel, "rms_norm", x.dtype, {"rows": 4, "n": 32}, other)(x, w, 1e-6, 0.0)
    assert seen[2:] == [default]


def test_a_malformed_size_floor_is_said_and_ignored(monkeypatch, capsys):
    kernel = registry.KERNELS["rms_norm"]
    monkeypatch.setenv("ADOPT_TRITON_MIN_BYTES", "lots")
    monkeypatch.setattr(_dispatch, "_said", set())
    assert not _dispatch.worth_a_launch(kernel, {"rows": 8, "n": 64, "dtype": "float32"})
    assert "ADOPT_TRITON_MIN_BYTES='lots' is not a number of bytes" in capsys.readouterr().err
