import pytest


@pytest.fixture(autouse=True)
def _kernels_enabled(monkeypatch):
    """Every test starts with all kernels on, whatever the calling shell exports."""
    monkeypatch.delenv("ADOPT_DISABLE", raising=False)
    # the tests' shapes are small: every CUDA (or interpreted) call takes the Triton kernel
    monkeypatch.setenv("ADOPT_TRITON_MIN_BYTES", "0")
