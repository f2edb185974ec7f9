import pytest
import torch

import adopt_kernels as ak
from checks import DTYPES, compare


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5, 7), (1, 1, 13), (2, 3, 4, 9)])
@pytest.mark.parametrize("dim", [-1, "last", 0, 1, -2])
def test_matches_torch_softmax(dtype, shape, dim):
    if dim == "last":
        dim = len(shape) - 1
    x = torch.randn(shape, dtype=dtype) * 3
    compare(
        lambda t: torch.softmax(t, dim=dim),
        lambda t: ak.softmax(t, dim=dim),
        [x],
        dtype=dtype,
    )


def test_default_dim_is_last():
    x = torch.randn(3, 5, 7)
    compare(lambda t: torch.softmax(t, dim=-1), lambda t: ak.softmax(t), [x])


@pytest.mark.parametrize("dim", [-1, 2])
def test_dtype_argument_upcasts(dim):
    x = torch.randn(3, 5, 7, dtype=torch.float32)
    ref, out = compare(
        lambda t: torch.softmax(t, dim=dim, dtype=torch.float64),
        lambda t: ak.softmax(t, dim=dim, dtype=torch.float64),
        [x],
        dtype=torch.float64,
    )
    assert out[0].dtype == torch.float64


def test_bfloat16_input_float32_softmax():
    x = torch.randn(3, 5, 7).to(torch.bfloat16)
    out = ak.softmax(x, dim=2, dtype=torch.float32)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.softmax(x, dim=-1, dtype=torch.float32))


def test_invalid_dim_raises_like_torch():
    with pytest.raises(IndexError):
        ak.softmax(torch.randn(3, 5), dim=2)
