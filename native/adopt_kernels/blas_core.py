"""Which CPU kernels OpenBLAS runs, and how to match them to the CPU when it guessed wrong.

A DYNAMIC_ARCH OpenBLAS (Debian's and Ubuntu's) picks its kernels from the CPU's family and
model numbers when it loads. A CPU newer than the library, or a virtual machine that hides the
model, gets the generic ``Prescott`` kernels (SSE3), whatever the CPU can do. Measured on the
2-core AVX-512 benchmark machine with OpenBLAS 0.3.21: a 2048x768 by 768x3072 product ran at 34
GFLOP/s with ``Prescott`` and at 167-181 with ``SkylakeX`` or ``Cooperlake``; BERT's training
step then spent 97% of its time in matrix products, which no fusion can touch.

:func:`match` switches a loaded OpenBLAS to the kernels of the CPU's instruction set, through
the library's own start-up (``gotoblas_dynamic_quit``, ``OPENBLAS_CORETYPE``,
``gotoblas_dynamic_init``), as if the variable had been set before it loaded. It changes the
whole process, so it is never done unasked: ``ADOPT_BLAS_CORE=1`` at import, or a call before
any other thread uses BLAS. A core the user chose in ``OPENBLAS_CORETYPE`` is left alone. The
benchmarks match the core for both sides of every comparison and say so.
"""

import ctypes
import os

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
    whether the loaded library carries a core's kernels."""
    level = cpu_level(flags)
    if level == "avx512":
        choices = ("Cooperlake", "SkylakeX") if "avx512_bf16" in set(flags) else ("SkylakeX",)
    elif level == "avx2":
        choices = ("Zen", "Haswell") if vendor == "AuthenticAMD" else ("Haswell",)
    elif level == "avx":
        choices = ("Sandybridge",)
    else:
        return None
    return next((c for c in choices if has_core(c)), None)


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


def report(environ=os.environ):
    """``{"path", "core", "wanted", "chosen_by"}`` for the loaded OpenBLAS: the core it runs, the
    core this CPU's instruction set calls for (None where it already runs one as wide, or the
    level is unknown), and who chose (``"library"``, ``"OPENBLAS_CORETYPE"`` or ``"adopt"``).
    None where no OpenBLAS that names its core is loaded."""
    found = _library()
    if found is None:
        return None
    path, lib = found
    core = lib.openblas_get_corename().decode()
    info = target.cpu_identity()
    want = wanted_core(info["flags"], info["vendor"], _has_core(lib))
    level = _LEVEL_OF.get(core.lower())
    behind = level is not None and want is not None and _ORDER.index(level) < _ORDER.index(_LEVEL_OF[want.lower()])
    chosen = "adopt" if _state["matched"] else ("OPENBLAS_CORETYPE" if environ.get("OPENBLAS_CORETYPE") else "library")
    return {"path": path, "core": core, "wanted": want if behind else None, "chosen_by": chosen}


_state = {"matched": False}


def match(environ=os.environ):
    """Switch the loaded OpenBLAS to the core of this CPU's instruction set where it runs a
    narrower one (see the module's doc). Returns the core now running, or None (with one
    message) where nothing was changed for a reason the caller should hear: no OpenBLAS that
    can switch, a core the user set, or a switch that did not take."""
    r = report(environ)
    if r is None:
        _dispatch.say_once("blas-core", "blas core: no OpenBLAS that names its kernels is loaded; nothing to match")
        return None
    if r["wanted"] is None:
        return r["core"]
    if r["chosen_by"] == "OPENBLAS_CORETYPE":
        _dispatch.say_once("blas-core", f"blas core: OPENBLAS_CORETYPE={environ['OPENBLAS_CORETYPE']} "
                           f"runs {r['core']} on a CPU that {r['wanted']} suits; left as set")
        return None
    _, lib = _library()
    before = environ.get("OPENBLAS_CORETYPE")
    environ["OPENBLAS_CORETYPE"] = r["wanted"]
    lib.gotoblas_dynamic_quit()
    lib.gotoblas_dynamic_init()
    now = lib.openblas_get_corename().decode()
    if before is None:
        environ.pop("OPENBLAS_CORETYPE", None)
    else:
        environ["OPENBLAS_CORETYPE"] = before
    if now.lower() != r["wanted"].lower():
        _dispatch.say_once("blas-core", f"blas core: asked OpenBLAS for {r['wanted']}, it runs {now}")
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
    return _process_switch.from_environment(environ, ENV, lambda: match(environ) is not None, "the BLAS core is left as it is")
