"""Worker threads that spin while idle, and how to make them sleep.

On CPUs a training step alternates matrix products (BLAS) with everything else (torch's own
OpenMP loops, and the compiled kernels, which use the same OpenMP runtime). Both thread pools
busy-wait after their work for the next call:

- OpenBLAS built with its own threads (``pthread``, Debian's and Ubuntu's default) spins for
  2^28 cycles after every call, about 0.1 s. Measured on the 2-core benchmark machine: after one
  512x512 product the process burns 50 ms of CPU during a 50 ms sleep.
- GNU OpenMP spins about 10 ms after every parallel region (``GOMP_SPINCOUNT``).

With as many threads as cores, the spinning thread shares a core with the next stage's worker.
A compiled attention kernel run right after a product took 92.5 ms instead of 78.9 ms, and a
whole training step (original and rewritten alike) took about 16% longer than with the BLAS
threads asleep.

:func:`quiet_blas_threads` makes a loaded pthread OpenBLAS put its threads to sleep at once
(``OPENBLAS_THREAD_TIMEOUT`` at its minimum, applied by restarting the library's threads, which
it does on its next call). It changes the whole process, so it is never done unasked:
``ADOPT_QUIET_BLAS_THREADS=1`` at import, or a call before any other thread uses BLAS. GNU
OpenMP reads its wait policy once, when it loads, so that part can only be set from outside the
process (``OMP_WAIT_POLICY=passive``); :func:`report` says what is in effect.
"""

import ctypes
import os

from . import _dispatch, _process_switch

ENV = "ADOPT_QUIET_BLAS_THREADS"
# OpenBLAS clamps its timeout exponent to 4..30: 2^4 cycles, so a thread sleeps as soon as it is idle
QUIET_TIMEOUT = 4
# openblas_get_parallel(): how the library was built
PARALLEL = {0: "sequential", 1: "pthreads", 2: "openmp"}

_state = {"quieted": False}


def _loaded_paths(marker):
    """Paths of the shared libraries mapped into this process whose file name contains marker."""
    try:
        with open("/proc/self/maps") as maps:
            names = {line.split()[-1] for line in maps if "/" in line and marker in line.rsplit("/", 1)[-1]}
    except OSError:
        return []
    return sorted(names)


def _openblas():
    """(path, handle) of the OpenBLAS this process has loaded, or (None, None)."""
    for path in _loaded_paths("libopenblas"):
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_parallel.restype = ctypes.c_int
            lib.openblas_get_num_threads.restype = ctypes.c_int
            lib.openblas_thread_timeout.restype = ctypes.c_int
            return path, lib
        except (OSError, AttributeError):
            continue
    return None, None


def openblas():
    """What the loaded OpenBLAS is: ``{"path", "threading", "threads", "timeout_env"}`` (the
    exponent it read from ``OPENBLAS_THREAD_TIMEOUT``, 0 when unset: its built-in 2^28 cycles), or
    None where no OpenBLAS is loaded (torch linked to MKL, or statically)."""
    path, lib = _openblas()
    if lib is None:
        return None
    return {"path": path, "threading": PARALLEL.get(lib.openblas_get_parallel(), "unknown"),
            "threads": lib.openblas_get_num_threads(), "timeout_env": lib.openblas_thread_timeout()}


def quiet_blas_threads():
    """Make a pthread OpenBLAS's idle threads sleep at once (see the module's doc). Returns True
    when that is in effect, False (with one message) where there is nothing to quiet: no OpenBLAS
    loaded, one built without threads or on OpenMP's, or one without the entry points used."""
    if _state["quieted"]:
        return True
    path, lib = _openblas()
    if lib is None:
        _dispatch.say_once("quiet-blas", "quiet_blas_threads: no OpenBLAS is loaded in this process; nothing to change")
        return False
    threading = PARALLEL.get(lib.openblas_get_parallel(), "unknown")
    if threading != "pthreads":
        _dispatch.say_once("quiet-blas", f"quiet_blas_threads: {path} uses {threading} threads, not its own; nothing to change")
        return False
    if not all(hasattr(lib, f) for f in ("openblas_read_env", "blas_thread_shutdown_")):
        _dispatch.say_once("quiet-blas", f"quiet_blas_threads: {path} lacks the entry points to restart its threads; left as it is")
        return False
    # the library reads its environment once, at load: set it, have it read again, and stop its
    # threads; its next call starts them with the new timeout
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(QUIET_TIMEOUT)
    lib.openblas_read_env()
    if lib.openblas_thread_timeout() != QUIET_TIMEOUT:
        _dispatch.say_once("quiet-blas", f"quiet_blas_threads: {path} did not take OPENBLAS_THREAD_TIMEOUT; left as it is")
        return False
    lib.blas_thread_shutdown_()
    _state["quieted"] = True
    return True


def quieted():
    """Whether :func:`quiet_blas_threads` is in effect in this process."""
    return _state["quieted"]


def report(environ=os.environ):
    """What the status shows: the BLAS threads and OpenMP's wait policy in this process."""
    blas = openblas()
    if blas is not None:
        # a timeout of 2^12 cycles or less (a microsecond or so) is asleep for this purpose
        blas["idle"] = "sleep" if quieted() or 0 < blas["timeout_env"] <= 12 else (
            "spin" if blas["threading"] == "pthreads" else "as its OpenMP")
    policy = environ.get("OMP_WAIT_POLICY", "").strip().lower()
    spin = environ.get("GOMP_SPINCOUNT", "").strip()
    openmp_idle = "sleep" if policy == "passive" or spin == "0" else ("spin" if not spin else f"spin {spin}")
    return {"openblas": blas, "quiet_blas_env": environ.get(ENV, ""), "openmp_idle": openmp_idle}


def from_environment(environ=os.environ):
    """Apply ``ADOPT_QUIET_BLAS_THREADS``: "1" (or "true", "yes", "on") quiets them; unset, "0"
    and the like leave them alone; anything else is reported once and ignored."""
    return _process_switch.from_environment(environ, ENV, quiet_blas_threads, "BLAS threads are left as they are")
