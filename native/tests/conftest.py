import pytest
import torch

from adopt_kernels.threads import threaded_openblases

# the OpenBLAS copies torch loaded (found once: reading the process's maps each test would cost)
_THREADED_BLAS = [lib for _, lib in threaded_openblases()]


@pytest.fixture(autouse=True)
def _thread_counts_restored():
    """Benchmarks run in-process set torch's and OpenBLAS's thread counts (adopt_kernels.threads):
    each test leaves them as it found them, so later tests run as the suite started."""
    blas = [(lib, lib.openblas_get_num_threads()) for lib in _THREADED_BLAS]
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
    for lib, n in blas:
        lib.openblas_set_num_threads(n)


@pytest.fixture(autouse=True)
def _kernels_enabled(monkeypatch):
    """Every test starts with all kernels on, whatever the calling shell exports."""
    monkeypatch.delenv("ADOPT_DISABLE", raising=False)
    # the tests' shapes are small: every CUDA (or interpreted) call takes the Triton kernel
    monkeypatch.setenv("ADOPT_TRITON_MIN_BYTES", "0")
    # and every CPU call the compiled kernel, whose fixed cost a small call would not repay
    monkeypatch.setenv("ADOPT_CPU_MIN_BYTES", "0")
