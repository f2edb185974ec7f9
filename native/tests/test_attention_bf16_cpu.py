"""bfloat16 attention on a CPU that multiplies bfloat16 natively runs the original code: there
torch's bfloat16 products beat the compiled kernel, which computes in float32. Elsewhere, and in
float32, the kernel runs."""

import math

import torch

import adopt_kernels as ak
from adopt_kernels import _dispatch, target


def _inputs(dtype):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 17, 16, generator=g).to(dtype) for _ in range(3))
    mask = torch.zeros(2, 1, 1, 17, dtype=dtype)
    mask[1, ..., 12:] = torch.finfo(dtype).min
    return q, k, v, mask


def _eager(q, k, v, mask):
    scores = torch.matmul(q.float(), k.float().transpose(-2, -1)) / math.sqrt(q.size(-1)) + mask.float()
    return torch.matmul(torch.softmax(scores, -1), v.float())


def _calls(native_bf16, dtype, monkeypatch):
    monkeypatch.setattr(target, "native_bf16_products", lambda: native_bf16)
    q, k, v, mask = _inputs(dtype)
    before = _dispatch.CALLS["flash_attention"]
    out = ak.attention(q, k, v, mask)
    torch.testing.assert_close(out.float(), _eager(q, k, v, mask), rtol=3e-2, atol=3e-2)
    return _dispatch.CALLS["flash_attention"] - before


def test_bfloat16_runs_the_original_where_the_cpu_multiplies_it_natively(monkeypatch, capsys):
    monkeypatch.setattr(_dispatch, "_said", set())
    assert _calls(True, torch.bfloat16, monkeypatch) == 0
    assert "bfloat16 runs the original code on this CPU" in capsys.readouterr().err


def test_negative_control_bfloat16_runs_the_kernel_elsewhere(monkeypatch):
    assert _calls(False, torch.bfloat16, monkeypatch) == 1


def test_float32_runs_the_kernel_either_way(monkeypatch):
    assert _calls(True, torch.float32, monkeypatch) == 1
