"""The sm_90 compile check against two kernels of its own: one that compiles, and one that
Triton's interpreter runs correctly but the compiler rejects (a ``tl.dot`` 8 wide, below the
16 the tensor cores take), which the check must report as failed with the compiler's reason."""

import os
import sys

import pytest
import torch

if torch.cuda.is_available():
    # there the kernel tests launch compiled kernels, which is this check and more
    pytest.skip("a CUDA device is here: the kernel tests compile for it", allow_module_level=True)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# before Triton is imported, as test_gpu_kernels.py does: the kernels are interpreted ones
os.environ["TRITON_INTERPRET"] = "1"
sys.path.append(os.path.join(ROOT, ".cache", "triton"))
triton = pytest.importorskip("triton", reason="Triton is not installed (scripts/setup-python.sh --hf installs it)")
tl = triton.language


@triton.jit
def _scale(X, Y, n, alpha, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(Y + i, tl.load(X + i, mask=i < n) * alpha, mask=i < n)


@triton.jit
def _dot(A, B, C, N: tl.constexpr):
    i = tl.arange(0, N)
    square = i[:, None] * N + i[None, :]
    tl.store(C + square, tl.dot(tl.load(A + square), tl.load(B + square)))


from adopt_kernels import gpu  # noqa: E402
from adopt_kernels.gpu import compile_check  # noqa: E402


@pytest.fixture(scope="module")
def check():
    gpu._interpreter_on_torch1()
    with compile_check.checking() as check:
        yield check


def test_a_good_kernel_compiles_once_per_specialisation(check):
    x = torch.randn(100)
    y = torch.empty_like(x)
    _scale[(4,)](x, y, 100, 2.0, BLOCK=32, num_warps=1)
    _scale[(4,)](x, y, 100, 3.0, BLOCK=32, num_warps=1)  # the same specialisation
    torch.testing.assert_close(y, 3 * x)
    (result,) = [r for r in check.results.values() if r["kernel"].endswith("._scale")]
    assert result["ok"], result["error"]
    assert result["regs"] > 0 and result["spills"] == 0
    # what the launcher specialises on: 16-aligned pointers, an int divisible by 16, not a float
    assert "X:*fp32/16" in result["spec"] and "n:i32/16=100" not in result["spec"] and "alpha:fp32=" in result["spec"]
    _scale[(4,)](x, y, 96, 2.0, BLOCK=32, num_warps=1)
    assert any("n:i32/16=96" in r["spec"] for r in check.results.values())


def test_a_kernel_only_the_compiler_rejects_is_reported(check):
    """The negative control: the interpreter computes the 8-wide product, the compiler refuses it."""
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    c = torch.empty(8, 8)
    _dot[(1,)](a, b, c, N=8)
    torch.testing.assert_close(c, a @ b)
    (failed,) = check.failures()
    assert failed["kernel"].endswith("._dot") and "N=8" in failed["spec"]
    assert "K >= 16" in failed["error"], failed["error"]
    report = check.report()
    assert "FAILED" in report and '"failures": [{' in report.splitlines()[-1]
