"""Which CPU kernels OpenBLAS runs, and how to match them to the CPU when it guessed wrong.

A DYNAMIC_ARCH OpenBLAS (Debian's and Ubuntu's) picks its kernels from the CPU's family and
model numbers when it loads. A CPU newer than the library, or a virtual machine that hides the
model, gets the generic ``Prescott`` kernels (SSE3), whatever the CPU can do. Measured on the
2-core AVX-512 benchmark machine with OpenBLAS 0.3.21: a 2048x768 by 768x3072 product ran at 34
GFLOP/s with ``Prescott`` and at 167-181 with ``SkylakeX`` or ``Cooperlake``; BERT's training
step then spent 97% of its time in matrix products, which no fusion can touch.

:func:`match` switches a loaded OpenBLAS to the kernels of the CPU's instruction set, through
the library's own start-up (``gotoblas_dynamic_quit``, ``OPENBLAS_CORETYPE``,
``gotoblas_dynamic_init``): the kernel selection the variable makes when set before the library
loads (its thread pool and buffers, sized alike for every core, stay as they are). It changes the
whole process, so it is never done unasked: ``ADOPT_BLAS_CORE=1`` at import, or a call before
any other thread uses BLAS. A core the user chose in ``OPENBLAS_CORETYPE`` is left alone. The
benchmarks match the core for both sides of every comparison and say so.
"""

import ctypes
import os
import threading

from . import _dispatch, _process_switch, idle_threads, target

ENV = "ADOPT_BLAS_CORE"

# OpenBLAS's x86-64 core names by the widest vector instructions their kernels use
_LEVELS = {
    "sse": ("Katmai", "Coppermine", "Northwood", "Prescott", "Banias", "Atom", "Core2", "Penryn",
            "Dunnington", "Nehalem", "Athlon", "Opteron", "Opteron(SSE3)", "Barcelona", "Nano", "Bobcat"),
    "avx": ("Sandybridge", "Bulldozer", "Piledriver", "Steamroller", "Excavator"),
    "avx2": ("Haswell", "Zen"),
    "avx512": ("SkylakeX", "Cooperlake", "SapphireRapids"),
}
_ORDER = ("sse", "avx", "avx2", "avx512")
_LEVEL_OF = {name.lower(): level for level, names in _LEVELS.items() for name in names}


def cpu_level(flags):
    """The widest vector level the CPU's flags allow OpenBLAS's kernels (SkylakeX needs F, BW,
    VL and DQ; Haswell needs AVX2 and FMA)."""
    flags = set(flags)
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    return "avx" if "avx" in flags else "sse"


def wanted_core(flags, vendor, has_core):
    """The OpenBLAS core for this CPU: Cooperlake where bfloat16 products exist, else SkylakeX;
    Zen on AMD's AVX2 CPUs, else Haswell; Sandybridge for AVX alone. ``has_core(name)`` says
    whether the loaded library carries a core's kernels; where it lacks the CPU's level (a build
    without AVX-512 kernels), the next level down."""
    flags = set(flags)
    choices = {
        "avx512": ("Cooperlake", "SkylakeX") if "avx512_bf16" in flags else ("SkylakeX",),
        "avx2": ("Zen", "Haswell") if vendor == "AuthenticAMD" else ("Haswell",),
        "avx": ("Sandybridge",),
    }
    levels = _ORDER[1:_ORDER.index(cpu_level(flags)) + 1]
    return next((c for level in reversed(levels) for c in choices[level] if has_core(c)), None)


def _library():
    """(path, handle) of the loaded OpenBLAS that can say and switch its core, or None."""
    for path, lib, _ in idle_threads.loaded_openblases():
        if all(hasattr(lib, f) for f in ("openblas_get_corename", "gotoblas_dynamic_init", "gotoblas_dynamic_quit")):
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return path, lib
    return None


def _has_core(lib):
    # each core's function table is an exported symbol named after it
    return lambda name: hasattr(lib, "gotoblas_" + name.upper())


def _status():
    """(the report below, the library's handle), or (None, None) where no OpenBLAS that names
    its core is loaded."""
    found = _library()
    if found is None:
        return None, None
    path, lib = found
    core = lib.openblas_get_corename().decode()
    info = target.cpu_identity()
    want = wanted_core(info["flags"], info["vendor"], _has_core(lib))
    level = _LEVEL_OF.get(core.lower())
    behind = level is not None and want is not None and _ORDER.index(level) < _ORDER.index(_LEVEL_OF[want.lower()])
    chosen = "adopt" if _state["matched"] else ("OPENBLAS_CORETYPE" if os.environ.get("OPENBLAS_CORETYPE") else "library")
    return {"path": path, "core": core, "wanted": want if behind else None, "chosen_by": chosen}, lib


def report():
    """``{"path", "core", "wanted", "chosen_by"}`` for the loaded OpenBLAS: the core it runs, the
    core this CPU's instruction set calls for (None where it already runs one as wide, or the
    level is unknown), and who chose (``"library"``, ``"OPENBLAS_CORETYPE"`` or ``"adopt"``).
    None where no OpenBLAS that names its core is loaded."""
    return _status()[0]


_state = {"matched": False}
_lock = threading.Lock()


def _switch(lib, core):
    """Restart the library's kernel selection with ``OPENBLAS_CORETYPE=core``; the core it then
    names. The variable is put back as it was: the library reads it only while it starts."""
    before = os.environ.get("OPENBLAS_CORETYPE")
    os.environ["OPENBLAS_CORETYPE"] = core
    try:
        lib.gotoblas_dynamic_quit()
        lib.gotoblas_dynamic_init()
    finally:
        if before is None:
            os.environ.pop("OPENBLAS_CORETYPE", None)
        else:
            os.environ["OPENBLAS_CORETYPE"] = before
    return lib.openblas_get_corename().decode()


def match():
    """Switch the loaded OpenBLAS to the core of this CPU's instruction set where it runs a
    narrower one (see the module's doc). Returns the core now running; None where no OpenBLAS
    that can switch is loaded (the status and the benchmarks' headers say so), or, with one
    message, where a core the user set is kept or a switch did not take (the library is then
    put back on the core it ran).

    Call it before any other thread uses BLAS: while the library restarts its selection, a
    product on another thread would find no kernels. Once matched, later calls change nothing."""
    with _lock:
        r, lib = _status()
        if r is None or r["wanted"] is None:
            return None if r is None else r["core"]
        if r["chosen_by"] == "OPENBLAS_CORETYPE":
            _dispatch.say_once("blas-core-user", f"blas core: OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} "
                               f"runs {r['core']} on a CPU that {r['wanted']} suits; left as set")
            return None
        if threading.active_count() > 1:
            _dispatch.say_once("blas-core-threads", "blas core: switching OpenBLAS's kernels while other Python threads "
                               "run; a product on one of them during the switch would fail")
        now = _switch(lib, r["wanted"])
        if now.lower() != r["wanted"].lower():
            # the library takes a core it does not find for the generic one: put back what ran
            back = _switch(lib, r["core"])
            _dispatch.say_once("blas-core-failed", f"blas core: asked OpenBLAS for {r['wanted']}, it ran {now}; "
                               f"back on {back}")
            return None
        _state["matched"] = True
        return now


def matched():
    """Whether :func:`match` switched the core in this process."""
    return _state["matched"]


def setting():
    """One phrase for a benchmark's header and rows: the core, and who chose it."""
    r = report()
    if r is None:
        return "no OpenBLAS"
    if r["chosen_by"] == "adopt":
        return f"OpenBLAS {r['core']} (matched to the CPU, both sides)"
    if r["wanted"]:
        return f"OpenBLAS {r['core']} (this CPU suits {r['wanted']})"
    return f"OpenBLAS {r['core']}"


def from_environment(environ=os.environ):
    """Apply ``ADOPT_BLAS_CORE``: on matches the core, off or unset leaves it."""
    return _process_switch.from_environment(environ, ENV, lambda: match() is not None, "the BLAS core is left as it is")
