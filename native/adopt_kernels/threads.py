"""One thread count for all that a timed comparison runs: torch's own loops, the compiled kernels
(which take ``torch.get_num_threads()``) and the BLAS library's products.

``torch.set_num_threads`` does not reach an OpenBLAS built with its own threads (Debian's, which
torch 1.13 links): its products keep one thread per core whatever torch was told. On the 2-core
benchmark machine, with torch at one thread, a batched product of attention's shape ran with the
process at 1.3 CPU seconds per second, and at 0.85 once OpenBLAS was told one thread too. A
comparison "at one thread" gave eager code's products two threads and the kernels one. With as
many threads as cores, which the benchmarks use by default, nothing changes.
"""

import torch

from . import _dispatch, idle_threads


def threaded_openblases():
    """(path, library) of every loaded OpenBLAS that runs threads of its own or OpenMP's."""
    return [(path, lib) for path, lib, threading in idle_threads.loaded_openblases() if threading != "sequential"]


def set_threads(n):
    """Run torch, the kernels and every loaded OpenBLAS with ``n`` threads. Returns the BLAS
    libraries' thread counts after the call (empty where no OpenBLAS is loaded: torch linked to
    MKL, which follows ``torch.set_num_threads`` itself, or statically)."""
    torch.set_num_threads(n)
    counts = []
    for path, lib in threaded_openblases():
        try:
            lib.openblas_set_num_threads(int(n))
        except AttributeError:
            _dispatch.say_once(("blas-threads", path), f"{path} cannot be told a thread count; its products use its own")
            continue
        counts.append(lib.openblas_get_num_threads())
    return counts
