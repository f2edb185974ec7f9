"""Keep freed CPU memory in the process instead of handing it back to the system.

glibc's malloc serves every block above its mmap threshold (at most 32 MiB, lower until a block
of that size is freed) with fresh pages from the system and unmaps them on free. A CPU training
step allocates such blocks for every large activation and gradient, so each step touches
hundreds of megabytes of new pages, and every first touch of a 4 KiB page is a page fault: a
fresh 64 MiB tensor filled once costs about eight times a fill of one already touched (measured
on the 2-core machine the benchmarks run on). The GPU's caching allocator never pays this; on a
CPU the usual cure is a caching malloc (jemalloc, tcmalloc) preloaded at start.

:func:`keep_freed_memory` gets the same effect from glibc itself, at run time: no block is
mmapped any more (``M_MMAP_MAX`` 0), so large blocks come from the heap and go back to it, and
the heap's free top is returned to the system only beyond 2 GiB (``M_TRIM_THRESHOLD``). The
price is resident memory: the process keeps its peak (up to that bound) after tensors are freed,
as a caching allocator does. It changes the whole process, the original model's code as much as
the kernels, so it is never switched on silently: ``ADOPT_KEEP_FREED_MEMORY=1`` at import, or
a call.
"""

import ctypes
import os
import sys

from . import _dispatch, _process_switch

# mallopt's parameter numbers (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
# mallopt takes an int: the largest free heap top kept
TRIM_THRESHOLD = 2**31 - 1
# the heap grows by at least this much at a time: fewer brk calls while a step's peak is reached
TOP_PAD = 64 << 20

ENV = "ADOPT_KEEP_FREED_MEMORY"

_state = {"kept": False}


def _glibc():
    """The process's C library when it is glibc (it has ``mallopt``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        return libc
    except (OSError, AttributeError):
        return None


def available():
    """Whether this process's malloc can be told to keep freed memory (glibc's can)."""
    return _glibc() is not None


def keep_freed_memory():
    """Make this process's malloc keep freed blocks for reuse (see the module's doc). Returns
    True when it is in effect, False (with one message) where the C library is not glibc."""
    if _state["kept"]:
        return True
    libc = _glibc()
    if libc is None:
        _dispatch.say_once("keep-freed-memory", "keep_freed_memory: the C library is not glibc; malloc is left as it is")
        return False
    ok = all(libc.mallopt(p, v) == 1 for p, v in ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
    if not ok:
        _dispatch.say_once("keep-freed-memory", "keep_freed_memory: glibc refused a malloc setting; malloc is left as it is")
        return False
    _state["kept"] = True
    return True


def kept():
    """Whether :func:`keep_freed_memory` is in effect in this process."""
    return _state["kept"]


def from_environment(environ=os.environ):
    """Apply ``ADOPT_KEEP_FREED_MEMORY``: "1" (or "true", "yes", "on") keeps freed memory; unset,
    "0" and the like leave malloc alone; anything else is reported once and ignored."""
    return _process_switch.from_environment(environ, ENV, keep_freed_memory, "malloc is left as it is")
