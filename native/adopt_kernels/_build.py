"""Compiling generated C++ kernels into plain shared libraries, cached by content.

A kernel's C++ source is rendered from its template and one schedule, so every schedule is its
own library. No torch headers are used: tensors cross into C through ctypes as raw pointers,
which keeps a build around a second instead of the half minute a torch extension takes.
Libraries are cached under ``$ADOPT_KERNEL_CACHE`` (default: the user's cache directory) by a
hash of the source, the compiler's identity and the flags, and written atomically so that two
processes building the same kernel never load a half-written file.
"""

import ctypes
import functools
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import threading

FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fassociative-math", "-fno-signed-zeros", "-fopenmp", "-fPIC", "-shared", "-std=c++17")
PRELUDE = r"""
#include <cstdint>
#include <cstring>
#include <cmath>
#include <algorithm>
#include <omp.h>
typedef uint16_t bf16_t;
static inline float bf16_to_f(bf16_t v) { uint32_t u = ((uint32_t)v) << 16; float f; std::memcpy(&f, &u, 4); return f; }
static inline bf16_t f_to_bf16(float f) {
  uint32_t u; std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x40u);  /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);  /* round to nearest even, as torch does */
  return (bf16_t)(u >> 16);
}
/* bfloat16 rounding kept in a float register (round to nearest even, low half cleared): for
   arithmetic results, whose NaNs are quiet, so the set quiet bit keeps a NaN a NaN */
static inline float bf16_round(float v) {
  uint32_t u; std::memcpy(&u, &v, 4);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(&v, &u, 4);
  return v;
}
static inline float load_f(const float* p, int64_t i) { return p[i]; }
static inline float load_f(const bf16_t* p, int64_t i) { return bf16_to_f(p[i]); }
static inline void store_f(float* p, int64_t i, float v) { p[i] = v; }
static inline void store_f(bf16_t* p, int64_t i, float v) { p[i] = f_to_bf16(v); }
"""


class KernelBuildError(RuntimeError):
    """A generated kernel did not compile; carries the compiler's own message."""


class CompilerUnavailable(KernelBuildError):
    """No C++ compiler with OpenMP is installed: kernels run their reference path."""


class CacheUnusable(KernelBuildError):
    """The kernel cache directory cannot be made or is not a directory."""


def cache_dir():
    root = os.environ.get("ADOPT_KERNEL_CACHE")
    named = "$ADOPT_KERNEL_CACHE=" if root else ""
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "adopt", "kernels")
    if os.path.exists(root) and not os.path.isdir(root):
        raise CacheUnusable(f"the kernel cache {named}{root} is not a directory")
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as e:
        # a parent that is a file (NotADirectoryError), no permission, a read-only disk
        raise CacheUnusable(f"the kernel cache {named}{root} cannot be made: {e.strerror or e}") from None
    return root


def compiler():
    return os.environ.get("CXX") or "g++"


def compiler_argv(cxx):
    """``cxx`` as the words of a command, split as a shell splits $CXX (``ccache g++``,
    ``g++ -O0``); None when it does not split into any. A path to an executable is one word even
    with spaces in it, as it was before $CXX was split."""
    if shutil.which(cxx) is not None:
        return [cxx]
    try:
        argv = shlex.split(cxx)
    except ValueError:
        return None
    return argv or None


def compiler_problem(cxx):
    """Why ``cxx`` cannot compile the kernels, in a sentence; None when it runs."""
    if shutil.which(cxx) is not None:
        return None if compiler_identity(cxx) is not None else f"no C++ compiler: {cxx} --version failed"
    try:
        argv = shlex.split(cxx)
    except ValueError as e:
        return f"$CXX={cxx!r} does not split into a command: {e}"
    if not argv:
        return f"$CXX={cxx!r} names no command"
    if shutil.which(argv[0]) is None:
        whence = f" (the command of $CXX={cxx!r})" if len(argv) > 1 else ""
        return f"no C++ compiler: {argv[0]!r}{whence} is not an executable on PATH"
    if compiler_identity(cxx) is None:
        return f"no C++ compiler: {cxx} --version failed"
    return None


@functools.lru_cache(maxsize=4)
def compiler_identity(cxx):
    """The compiler's version line; None when it cannot be run."""
    argv = compiler_argv(cxx)
    if argv is None or shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.splitlines()[0] if out.returncode == 0 and out.stdout else None


def source_hash(source, cxx=None):
    cxx = cxx or compiler()
    ident = compiler_identity(cxx) or "none"
    h = hashlib.sha256()
    for part in (PRELUDE, source, cxx, ident, " ".join(FLAGS)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


_lock = threading.Lock()
_loaded = {}


def library_path(source):
    return os.path.join(cache_dir(), f"adopt_{source_hash(source)}.so")


def build(source, timeout=120):
    """The path of the compiled library for ``source``, compiling it on a cache miss."""
    cxx = compiler()
    if compiler_identity(cxx) is None:
        raise CompilerUnavailable(f"{compiler_problem(cxx) or f'no C++ compiler found (tried {cxx!r})'} (set $CXX): adopt kernels run their reference path")
    path = library_path(source)
    if os.path.exists(path):
        return path
    directory = cache_dir()
    fd, tmp_src = tempfile.mkstemp(suffix=".cpp", dir=directory)
    tmp_lib = tmp_src[:-4] + ".so"
    try:
        with os.fdopen(fd, "w") as f:
            f.write(PRELUDE)
            f.write(source)
        try:
            proc = subprocess.run([*compiler_argv(cxx), *FLAGS, tmp_src, "-o", tmp_lib], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise KernelBuildError(f"{cxx} ran past {timeout} s compiling a kernel") from None
        if proc.returncode != 0:
            first = "\n".join(proc.stderr.strip().splitlines()[:20])
            raise KernelBuildError(f"{cxx} failed on a generated kernel ({tmp_src}):\n{first}")
        os.replace(tmp_lib, path)
    finally:
        for p in (tmp_src, tmp_lib):
            if os.path.exists(p) and not (p == tmp_src and os.environ.get("ADOPT_KEEP_KERNEL_SOURCE")):
                os.remove(p)
    return path


def load(source):
    """The ctypes library for ``source``, built on first use and kept for the process."""
    key = source_hash(source)
    with _lock:
        lib = _loaded.get(key)
        if lib is None:
            lib = ctypes.CDLL(build(source))
            _loaded[key] = lib
        return lib
