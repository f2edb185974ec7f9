"""One thread count for torch, the kernels and OpenBLAS (adopt_kernels.threads); conftest restores the
counts after each test."""

import os

import pytest
import torch

from adopt_kernels.threads import set_threads, threaded_openblases

THREADED = threaded_openblases()

TWO_CORES = (os.cpu_count() or 1) >= 2


@pytest.mark.skipif(not THREADED or not TWO_CORES, reason="needs a threaded OpenBLAS and two cores")
def test_one_thread_reaches_torch_and_every_openblas():
    assert set_threads(2) == [2] * len(THREADED)  # from two, so that one is a change
    counts = set_threads(1)
    assert torch.get_num_threads() == 1
    assert counts == [1] * len(THREADED)
    assert [lib.openblas_get_num_threads() for _, lib in THREADED] == counts


@pytest.mark.skipif(not THREADED or not TWO_CORES, reason="needs a threaded OpenBLAS and two cores")
def test_negative_control_torch_alone_leaves_openblas_at_its_own_count():
    set_threads(2)
    torch.set_num_threads(1)  # what the benchmarks did before: OpenBLAS keeps its two threads
    assert [lib.openblas_get_num_threads() for _, lib in THREADED] == [2] * len(THREADED)
    assert set_threads(1) == [1] * len(THREADED)
