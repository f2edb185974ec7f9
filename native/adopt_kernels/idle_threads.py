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


def loaded_openblases():
    """(path, handle, threading) of every OpenBLAS this process has loaded: torch's, and any other
    a wheel brought (numpy's or scipy's own copy), pthread builds first."""
    found = []
    for path in _loaded_paths("libopenblas"):
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_parallel.restype = ctypes.c_int
            lib.openblas_get_num_threads.restype = ctypes.c_int
            lib.openblas_thread_timeout.restype = ctypes.c_int
            found.append((path, lib, PARALLEL.get(lib.openblas_get_parallel(), "unknown")))
        except (OSError, AttributeError):
            continue
    return sorted(found, key=lambda f: f[2] != "pthreads")


def _idle(threading, timeout_env):
    """How a library's threads wait: a pthread build spins unless its timeout is 2^12 cycles
    (a microsecond or so) or less; an OpenMP build waits as OpenMP does; a sequential one has none."""
    if threading == "pthreads":
        return "sleep" if 0 < timeout_env <= 12 else "spin"
    return "none" if threading == "sequential" else "as its OpenMP"


def openblas():
    """What the loaded OpenBLAS is (a pthread one where several are loaded): ``{"path",
    "threading", "threads", "timeout_env", "idle", "copies"}``, ``timeout_env`` the exponent it
    read from ``OPENBLAS_THREAD_TIMEOUT`` (0 when unset: its built-in 2^28 cycles), ``copies`` how
    many are loaded; None where none is (torch linked to MKL, or statically)."""
    found = loaded_openblases()
    if not found:
        return None
    path, lib, threading = found[0]
    timeout_env = lib.openblas_thread_timeout()
    return {"path": path, "threading": threading, "threads": lib.openblas_get_num_threads(), "timeout_env": timeout_env,
            "idle": _idle(threading, timeout_env), "copies": len(found)}


def _quiet(path, lib):
    """One pthread OpenBLAS's idle threads put to sleep; an error message, or None."""
    if not all(hasattr(lib, f) for f in ("openblas_read_env", "blas_thread_shutdown_")):
        return f"{path} lacks the entry points to restart its threads; left as it is"
    # the library reads its environment once, at load: set it, have it read again, and stop its
    # threads; its next call starts them with the new timeout
    before = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(QUIET_TIMEOUT)
    lib.openblas_read_env()
    if lib.openblas_thread_timeout() != QUIET_TIMEOUT:
        if before is None:
            os.environ.pop("OPENBLAS_THREAD_TIMEOUT", None)
        else:
            os.environ["OPENBLAS_THREAD_TIMEOUT"] = before
        lib.openblas_read_env()
        return f"{path} did not take OPENBLAS_THREAD_TIMEOUT; left as it is"
    lib.blas_thread_shutdown_()
    return None


def quiet_blas_threads():
    """Make every loaded pthread OpenBLAS's idle threads sleep at once (see the module's doc).
    Returns True when that is in effect for at least one, False (with one message) where there is
    nothing to quiet: no OpenBLAS loaded, one built without threads or on OpenMP's, or one without
    the entry points used. A timeout the user set in ``OPENBLAS_THREAD_TIMEOUT`` is replaced."""
    if _state["quieted"]:
        return True
    found = loaded_openblases()
    if not found:
        _dispatch.say_once("quiet-blas", "quiet_blas_threads: no OpenBLAS is loaded in this process; nothing to change")
        return False
    pthread = [(path, lib) for path, lib, threading in found if threading == "pthreads"]
    if not pthread:
        _dispatch.say_once("quiet-blas", f"quiet_blas_threads: {found[0][0]} uses {found[0][2]} threads, not its own; nothing to change")
        return False
    errors = [e for e in (_quiet(path, lib) for path, lib in pthread) if e]
    for e in errors:
        _dispatch.say_once(f"quiet-blas {e}", f"quiet_blas_threads: {e}")
    _state["quieted"] = len(errors) < len(pthread)
    return _state["quieted"]


def quieted():
    """Whether :func:`quiet_blas_threads` is in effect in this process."""
    return _state["quieted"]


def report(environ=os.environ):
    """What the status shows: the BLAS threads and OpenMP's wait policy in this process (as the
    environment says now: GNU OpenMP read it when it loaded)."""
    blas = openblas()  # a quieted library reports the short timeout it took
    # GOMP_SPINCOUNT, where set, decides; OMP_WAIT_POLICY only where it is not
    spin = environ.get("GOMP_SPINCOUNT", "").strip()
    policy = environ.get("OMP_WAIT_POLICY", "").strip().lower()
    if spin:
        openmp_idle = "sleep" if spin == "0" else f"spin {spin}"
    else:
        openmp_idle = "sleep" if policy == "passive" else "spin"
    return {"openblas": blas, "quiet_blas_env": environ.get(ENV, ""), "openmp_idle": openmp_idle}


def from_environment(environ=os.environ):
    """Apply ``ADOPT_QUIET_BLAS_THREADS``: "1" (or "true", "yes", "on") quiets them; unset, "0"
    and the like leave them alone; anything else is reported once and ignored."""
    return _process_switch.from_environment(environ, ENV, quiet_blas_threads, "BLAS threads are left as they are")
