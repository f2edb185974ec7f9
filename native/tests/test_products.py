import pytest
import torch

import adopt_kernels as ak

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.int64]


def actual(a, b):
    return torch.matmul(a[..., :1, :], b[..., :, :1]).dtype


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("autocast", [None, torch.bfloat16], ids=["plain", "autocast-bf16"])
def test_product_dtype_is_what_matmul_gives(device, dtype, autocast):
    a = torch.ones(2, 3, 4, dtype=dtype, device=device)
    b = torch.ones(2, 4, 5, dtype=dtype, device=device)
    if autocast is None:
        assert ak.product_dtype(a, b) == actual(a, b) == dtype
        return
    with torch.autocast(device, dtype=autocast):
        expected = actual(a, b)
        assert ak.product_dtype(a, b) == expected
    # outside the block the operands' own dtype again
    assert ak.product_dtype(a, b) == dtype


def test_mixed_dtypes_raise_as_matmul_does():
    a, b = torch.ones(2, 3), torch.ones(3, 2, dtype=torch.float64)
    with pytest.raises(RuntimeError):
        torch.matmul(a, b)
    with pytest.raises(RuntimeError):
        ak.product_dtype(a, b)


def test_launches_nothing_for_same_dtype_operands():
    a, b = torch.ones(2, 3, 4), torch.ones(2, 4, 3)
    with torch.autograd.profiler.profile() as prof:
        ak.product_dtype(a, b)
    assert not [e.name for e in prof.function_events if e.name.startswith("aten::")]
