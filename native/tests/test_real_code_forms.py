"""The kernel API behind the real-code forms: gated_act on the halves of a chunk, rms_norm with
the weight applied in float32 (keep_fp32), and interleaved RoPE with complex rotations' tables."""
import pytest
import torch
import torch.nn.functional as F

import adopt_kernels as ak
from adopt_kernels import _dispatch
from adopt_kernels._impl import projections
from checks import compare


@pytest.mark.parametrize("gate_first", [True, False])
@pytest.mark.parametrize("act", [F.silu, F.gelu, torch.nn.GELU(approximate="tanh"), torch.relu])
def test_gated_act_on_chunk_halves_matches_the_product(gate_first, act):
    h = torch.randn(3, 5, 2 * 24, dtype=torch.float64).float()

    def split(x):
        a, b = x.chunk(2, dim=-1)
        return (a, b) if gate_first else (b, a)

    def reference(x):
        gate, up = split(x)
        return act(gate) * up

    def fused(x):
        gate, up = split(x)
        return ak.gated_act(gate, up, act)

    compare(reference, fused, [h], atol=1e-5, rtol=1e-5)


def test_gated_act_reads_a_contiguous_chunk_in_place():
    h = torch.randn(4, 2 * 16)
    gate, up = h.chunk(2, dim=-1)
    assert projections._stacked_base(gate, up) is h
    # swapped halves and halves of different tensors are two tensors to the kernel
    assert projections._stacked_base(up, gate) is None
    assert projections._stacked_base(gate, torch.randn(4, 16)) is None


def test_gated_act_compiled_pass_runs_for_silu():
    before = _dispatch.CALLS["gated_act"]
    gate, up = torch.randn(6, 2 * 32).chunk(2, dim=-1)
    out = ak.gated_act(gate, up, F.silu)
    torch.testing.assert_close(out, F.silu(gate) * up)
    assert _dispatch.CALLS["gated_act"] == before + 1


def test_gated_act_falls_back_for_other_activations(monkeypatch):
    monkeypatch.setenv("ADOPT_DISABLE", "gated_mlp")
    gate, up = torch.randn(2, 8), torch.randn(2, 8)
    torch.testing.assert_close(ak.gated_act(gate, up, torch.tanh), torch.tanh(gate) * up)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_keep_fp32_scales_before_the_cast(dtype):
    x = torch.randn(2, 5, 24).to(dtype)
    w = 0.1 * torch.randn(24)

    def gemma(x, w):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
        return (h * (1.0 + w.float())).type_as(x)

    def fused(x, w):
        return ak.rms_norm(x, 1.0 + w.float(), 1e-6, cast_to_fp32=True, keep_fp32=True).type_as(x)

    compare(gemma, fused, [x, w], atol=1e-6, rtol=1e-6)
    assert fused(x, w).dtype == dtype


def test_rms_norm_keep_fp32_result_is_float32_for_half_inputs():
    x = torch.randn(3, 8).to(torch.bfloat16)
    out = ak.rms_norm(x, torch.ones(8), 1e-6, cast_to_fp32=True, keep_fp32=True)
    assert out.dtype == torch.float32


def test_interleaved_rope_takes_complex_rotations_tables():
    x = torch.randn(2, 7, 4, 16)
    angles = torch.randn(7, 8)
    freqs_cis = torch.polar(torch.ones_like(angles), angles).view(1, 7, 1, 8)
    reference = torch.view_as_real(torch.view_as_complex(x.reshape(2, 7, 4, 8, 2)) * freqs_cis).flatten(3)
    before = _dispatch.CALLS["rope"]
    out = ak.apply_rope_interleaved(x, None, freqs_cis.real, freqs_cis.imag, unsqueeze_dim=None)
    torch.testing.assert_close(out, reference, atol=1e-6, rtol=1e-6)
    # the strided real/imaginary views are made contiguous for the compiled kernel
    assert _dispatch.CALLS["rope"] == before + 1
