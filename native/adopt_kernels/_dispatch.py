"""Choosing and calling the compiled variant of a kernel for the tensors at hand.

The API functions call :func:`function` with the kernel, the dtype and the workload; it
returns a ctypes function of the library built for that dtype and the workload's schedule
(from a schedule file, else the kernel's default), or None when the compiled path cannot
run: the switch is off, no compiler, or the build failed. The reason is said once per
process, and the caller runs the reference. :data:`CALLS` counts compiled calls per kernel, so
a verification can tell that the compiled path ran; :data:`WORKLOADS` counts them per kernel and
workload, so the tuner can learn which workloads a model runs.
"""

import collections
import contextlib
import contextvars
import ctypes
import os
import sys
import threading

import torch

from . import _build, environ, gpu, registry, schedules
from .registry import CpuFloors
from ._impl.switches import all_enabled, enabled

CALLS = collections.Counter()
WORKLOADS = collections.Counter()
# per kernel, the checks at which its CPU size floor handed a call to the torch code (a call that
# looks up its forward and backward entry points counts twice there), and the calls a shape sent
# there at any size (attention's one query row without autograd): which kernels ran only so is
# what the tuner reports when it finds nothing to tune
SMALL = collections.Counter()
_said = set()
_functions = {}
_lock = threading.RLock()

_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16"}


def dtype_name(dtype):
    return _DTYPES.get(dtype)


def say_once(key, msg):
    if key not in _said:
        _said.add(key)
        print(f"adopt_kernels: {msg}", file=sys.stderr)


def save_for_backward(ctx, *tensors):
    """``ctx.save_for_backward``, with an inference tensor (made under ``torch.inference_mode``
    and used outside it) saved as a normal copy: autograd refuses to save one, where the torch
    code a kernel replaces saves only what it computes from such an input."""
    ctx.save_for_backward(*(t.clone() if isinstance(t, torch.Tensor) and t.is_inference() else t for t in tensors))


def native_ok(kernel, *tensors):
    """True when the compiled CPU path may take these tensors: switch on, CPU, fp32/bf16."""
    if not (enabled("native") and enabled(kernel.switch)):
        return False
    for t in tensors:
        if t is None:
            continue
        if t.device.type != "cpu" or t.dtype not in _DTYPES:
            return False
    return True


def library(kernel, schedule, dtype):
    """The loaded library of ``kernel`` at ``schedule`` for ``dtype`` (a name); raises on failure."""
    return _build.load(kernel.source(schedule, dtype))


def function(kernel, symbol, dtype, workload, schedule=None, any_size=False, training=None):
    """The compiled ``symbol`` of ``kernel`` for this workload, or None (reference path). A call
    below the kernel's size floor gets None too, unless ``any_size`` (a helper that must run the
    kernel's own code, such as its dropout mask); ``training`` as for :func:`cpu_floor`."""
    name = dtype_name(dtype) if not isinstance(dtype, str) else dtype
    keyed = dict(workload, dtype=name)
    if not any_size and not worth_a_call(kernel, keyed, training):
        return None
    WORKLOADS[(kernel.name, tuple(sorted(keyed.items())))] += 1
    if schedule is None:
        schedule = schedules.lookup(kernel, keyed)
    key = (kernel.name, symbol, name, tuple(sorted(schedule.items())))
    fn = _functions.get(key)
    if fn is not None:
        return fn
    with _lock:
        fn = _functions.get(key)
        if fn is not None:
            return fn
        try:
            lib = library(kernel, schedule, name)
        except _build.CompilerUnavailable as e:
            say_once("compiler", str(e))
            return None
        except (_build.KernelBuildError, OSError) as e:
            # a tuned schedule falls back to this machine's default, that to the portable one (a
            # target default may be what failed), that to the reference path
            chain = [kernel.space.default, kernel.space.portable_default]
            later = chain[chain.index(schedule) + 1:] if schedule in chain else chain
            fallback = next((s for s in later if s != schedule), None)
            if fallback is not None:
                say_once(("schedule", key), f"{kernel.name} schedule {schedule} failed to build ({e}); using the default {fallback}")
                return function(kernel, symbol, dtype, workload, dict(fallback), any_size, training)
            say_once(("build", kernel.name, name), f"{kernel.name} ({name}) failed to build; running its reference path:\n{e}")
            return None
        fn = getattr(lib, symbol)
        fn.restype = None
        omp = kernel.space.omp_schedule(schedule)
        if omp is not None:
            fn = OmpScheduled(fn, lib, *omp)
        _functions[key] = fn
        return fn


class OmpScheduled:
    """A compiled function whose parallel loops read the OpenMP schedule at run time
    (``schedule(runtime)``): each call sets the calling thread's schedule to the tuned kind and
    chunk, and restores what it was (torch shares the OpenMP runtime)."""

    def __init__(self, fn, lib, kind, chunk):
        self.fn, self.kind, self.chunk = fn, ctypes.c_int(kind), ctypes.c_int(chunk)
        # the library links the OpenMP runtime, so its symbols resolve through the library's handle
        self.set_schedule, self.get_schedule = lib.omp_set_schedule, lib.omp_get_schedule
        self.set_schedule.restype = self.get_schedule.restype = None

    def __call__(self, *args):
        kind, chunk = ctypes.c_int(), ctypes.c_int()
        self.get_schedule(ctypes.byref(kind), ctypes.byref(chunk))
        self.set_schedule(self.kind, self.chunk)
        try:
            return self.fn(*args)
        finally:
            self.set_schedule(kind, chunk)


_GPU_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def on_gpu(*tensors):
    """True when these tensors go to the kernel's Triton path: on a CUDA device, or on the CPU
    under Triton's interpreter (tests)."""
    present = [t for t in tensors if t is not None]
    if not present:
        return False
    if all(t.is_cuda for t in present):
        return True
    return gpu.interpreting() and all(t.device.type == "cpu" for t in present)


def gpu_function(kernel, symbol, dtype, workload, schedule=None):
    """The Triton ``symbol`` of ``kernel`` bound to the workload's schedule, or None (reference
    path: switch off, dtype not handled, no Triton). A schedule that fails to compile (too much
    shared memory, say) falls back to the default, once said."""
    if not (enabled("native") and enabled(kernel.switch)) or kernel.cuda_space is None:
        return None
    name = _GPU_DTYPES.get(dtype)
    if name is None:
        return None
    try:
        mod = gpu.module(kernel)
    except ImportError as e:
        say_once(("gpu", kernel.name), f"{kernel.name}: Triton kernel unavailable ({e}); running its reference path")
        return None
    workload = dict(workload, dtype=name)
    if not worth_a_launch(kernel, workload):
        return None
    WORKLOADS[(kernel.name, tuple(sorted(dict(workload, device="cuda").items())))] += 1
    if schedule is None:
        schedule = schedules.lookup(kernel, workload, device="cuda")
    if (kernel.name, tuple(sorted(schedule.items()))) in _FAILED_SCHEDULES:
        schedule = dict(kernel.cuda_space.default)
    fn = getattr(mod, symbol)

    def call(*args, **kwargs):
        with _on_device_of(args):
            try:
                out = with_fallback(kernel, schedule, lambda s: fn(*args, schedule=s, **kwargs))
            except Exception as e:
                if (kernel.name, symbol) in _LAUNCHED:
                    raise
                return _first_launch_failed(kernel, mod, e)
        _LAUNCHED.add((kernel.name, symbol))
        CALLS[kernel.name] += 1
        return out

    return call


def with_fallback(kernel, schedule, launch):
    """``launch(schedule)``; a schedule the device cannot take (resources) runs the default
    instead, and is remembered, counted in FALLBACKS and said once."""
    default = kernel.cuda_space.default
    try:
        return launch(schedule)
    except Exception as e:
        if schedule == default or not _is_resource_error(e):
            raise
        key = (kernel.name, tuple(sorted(schedule.items())))
        _FAILED_SCHEDULES.add(key)
        FALLBACKS[kernel.name] += 1
        say_once(("gpu-schedule",) + key, f"{kernel.name} schedule {schedule} cannot run on this device ({type(e).__name__}); using the default")
        return launch(dict(default))


FALLBACKS = collections.Counter()  # calls whose schedule could not run and took the default
_FAILED_SCHEDULES = set()
_LAUNCHED = set()  # (kernel, entry) that ran once: later errors are the caller's, not the build's


def _first_launch_failed(kernel, mod, e):
    """A kernel that cannot build or launch here (no host compiler for Triton's launcher, a GPU
    too old for its instructions) is switched off for the process and its caller runs the torch
    path; an in-place kernel cannot hand its work back, so its error stands."""
    gpu.give_up(kernel, f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
    say_once(("gpu-build", kernel.name), f"{kernel.name}: the Triton kernel failed at its first launch ({type(e).__name__}: {e}); "
             "running the torch path from now on")
    if getattr(mod, "IN_PLACE", False):
        raise e
    return None


def _on_device_of(args):
    """Triton launches on the current device: make it the tensors' device (a model on cuda:1)."""
    dev = next((a.device for a in args if isinstance(a, torch.Tensor) and a.is_cuda), None)
    if dev is None or dev.index is None or dev.index == torch.cuda.current_device():
        return contextlib.nullcontext()
    return torch.cuda.device(dev)


# Below this a launch costs more than the fusion saves: on an H200 the forwards of rewritten BERT,
# RoBERTa, ALBERT and a LLaMA-style decoder at batch 8 x 512 (6-25 MB per call) ran 1.3-1.7x
# slower with every call on the Triton kernels than the originals, while at 128 MiB and more the
# same kernels ran up to 5x faster than eager code (docs/kernels.md).
GPU_MIN_BYTES = 64 << 20


def worth_a_launch(kernel, workload):
    """Whether a CUDA call of ``kernel`` at ``workload`` takes the Triton kernel (size floor;
    ``$ADOPT_TRITON_MIN_BYTES`` overrides it for every kernel, 0 always launches)."""
    floor = _floor(GPU_MIN_BYTES_ENV, GPU_MIN_BYTES, kernel.gpu_min_bytes)
    if _above(kernel, workload, floor):
        return True
    say_once(("gpu-small", kernel.name), f"{kernel.name}: CUDA calls under {size_text(floor)} run torch's own kernels "
             f"(the launch costs more than the fusion saves there); {GPU_MIN_BYTES_ENV}=0 launches the Triton kernel always")
    return False


# Below these a compiled CPU call costs more than the fusion saves: its fixed cost (the API's
# checks, the schedule lookup, the autograd Function, the ctypes call, waking OpenMP's threads) is
# some tens of microseconds, which eager torch code does not pay. Measured per kernel by
# ``npm run bench:crossover`` (docs/kernels.md); a kernel's registration sets its own.
CPU_MIN_BYTES = CpuFloors(inference=1 << 20, training=128 << 10)
CPU_MIN_BYTES_ENV = "ADOPT_CPU_MIN_BYTES"
GPU_MIN_BYTES_ENV = "ADOPT_TRITON_MIN_BYTES"


def registered_floors(kernel):
    """The kernel's own CPU floors, else the default ones (whatever the environment says)."""
    return CPU_MIN_BYTES if kernel.cpu_min_bytes is None else kernel.cpu_min_bytes


def cpu_floor(kernel, training=None):
    """The bytes below which a CPU call of ``kernel`` runs the torch code: the training floor
    where autograd records, else the inference one. ``training`` None goes by torch's grad mode;
    a call that applies dropout passes True: under reentrant checkpointing its first pass runs
    without grad and its recomputation with, and both must take the same path, or the
    recomputation would draw another dropout mask than the pass the loss used. An
    :func:`at_any_size` block, then ``$ADOPT_CPU_MIN_BYTES``, override both for every kernel."""
    override = cpu_floor_override()
    if override is not None:
        return override
    own = registered_floors(kernel)
    training = torch.is_grad_enabled() if training is None else training
    return own.training if training else own.inference


# the floor an at_any_size block sets, for its thread (and the tasks it starts) only
_ANY_SIZE = contextvars.ContextVar("adopt_any_size", default=None)


@contextlib.contextmanager
def at_any_size():
    """Every CPU call inside runs the compiled kernel whatever its size: a verification runs a
    tiny instance of a model, and must check the kernels the model runs at its real size. The
    setting is the block's own (a context variable): other threads keep their floors, and
    nested or overlapping blocks restore what each found."""
    token = _ANY_SIZE.set(0.0)
    try:
        yield
    finally:
        _ANY_SIZE.reset(token)


def worth_a_call(kernel, workload, training=None):
    """Whether a CPU call of ``kernel`` at ``workload`` (with its dtype) runs the compiled kernel."""
    floor = cpu_floor(kernel, training)
    if _above(kernel, workload, floor):
        return True
    _handed_to_torch(kernel, floor)
    return False


def small(name, nbytes, tensor, training=None, nothing_to_save=None):
    """True when a CPU call of kernel ``name`` moving ``nbytes`` is below its floor: the API
    function then runs its torch formulation at once. On a token-at-a-time decode every call is
    small, and the checks only the compiled path needs (the module's, the kernel's, the schedule
    lookup) cost tens of microseconds a call, as much as the torch code itself. A call the
    compiled kernel would not take anyway (switched off, float64) is not small: it is not
    counted or announced as one. ``training`` as for :func:`cpu_floor`.

    ``nothing_to_save``, where given, says why a call of any size is handed to torch (a shape at
    which the fusion has no traffic to remove); a floor of 0 (:func:`at_any_size`,
    ``$ADOPT_CPU_MIN_BYTES=0``) still runs the kernel."""
    if tensor.is_cuda or gpu.interpreting():
        return False
    kernel = registry.KERNELS[name]
    if tensor.dtype not in _DTYPES or not all_enabled("native", kernel.switch):
        return False
    floor = cpu_floor(kernel, training)
    if floor <= 0 or (nbytes >= floor and not nothing_to_save):
        return False
    _handed_to_torch(kernel, floor, nothing_to_save if nbytes >= floor else None)
    return True


def _handed_to_torch(kernel, floor, why=None):
    """Counts a call the floor sent to the torch code, and says so once per kernel and mode (and
    reason, where a shape rather than a size sent it)."""
    SMALL[kernel.name] += 1
    key = ("cpu-small", kernel.name, torch.is_grad_enabled(), why)
    if key not in _said:  # said once; the message is not even formatted again (this path is per call)
        mode = "with autograd" if key[2] else "under no_grad"
        which = why or f"under {size_text(floor)}"
        because = "" if why else " (the compiled call's fixed cost is more than the fusion saves there)"
        say_once(key, f"{kernel.name}: CPU calls {mode} {which} run the torch code{because}; {CPU_MIN_BYTES_ENV}=0 runs the compiled kernel always")


def cpu_floor_override():
    """The floor set for every kernel, or None: an :func:`at_any_size` block's (0), else
    ``$ADOPT_CPU_MIN_BYTES``'s."""
    forced = _ANY_SIZE.get()
    return forced if forced is not None else _floor(CPU_MIN_BYTES_ENV, None, None)


def _floor(env_name, default, own):
    floor = default if own is None else own
    env = environ.get(env_name)
    if env:
        try:
            floor = float(env)
        except ValueError:
            say_once(("min-env", env_name), f"{env_name}={env!r} is not a number of bytes; ignored")
    return floor


def _above(kernel, workload, floor):
    if floor <= 0:
        return True
    try:
        moved = kernel.bytes_moved(workload) if kernel.bytes_moved else None
    except (KeyError, TypeError):
        moved = None
    return moved is None or moved >= floor


def size_text(b):
    """Bytes as people read them (1.5 MiB), for messages."""
    if b == float("inf"):
        return "any size"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b:.0f} bytes"


def _is_resource_error(e):
    name = type(e).__name__
    return name in ("OutOfResources", "CompilationError", "PTXASError") or "out of resource" in str(e).lower()


def ptr(t):
    return ctypes.c_void_p(t.data_ptr()) if t is not None else ctypes.c_void_p(0)


def i64(v):
    return ctypes.c_int64(int(v))


def f32(v):
    return ctypes.c_float(float(v))


def threads():
    """Kernels use as many threads as torch does, so comparisons with eager code are fair."""
    return ctypes.c_int(torch.get_num_threads())


def forget():
    """Drop the loaded functions, so the next call renders its template again (a test that
    swaps a template in needs this; the compiled libraries stay cached on disk)."""
    with _lock:
        _functions.clear()
