import pytest
import torch
from torch import nn

import adopt_kernels as ak
from adopt_kernels import _dispatch
from adopt_kernels._impl import rms_norm as rms_impl
from checks import DTYPES, compare


class LlamaRMSNorm(nn.Module):
    def __init__(self, hidden_size, eps, dtype, offset=0.0, weight=True, cast=True):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(hidden_size, dtype=dtype) + 0.5) if weight else None
        self.variance_epsilon = eps
        self.offset = offset
        self.cast = cast

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        if self.cast:
            hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        if self.weight is None:
            return hidden_states.to(input_dtype)
        return (self.offset + self.weight) * hidden_states.to(input_dtype)


@pytest.fixture(params=["compiled", "fake_f_rms_norm"])
def backend(request, monkeypatch):
    calls = []
    if request.param == "fake_f_rms_norm":
        # the torch formulation is what runs where the compiled kernel is switched off
        monkeypatch.setenv("ADOPT_DISABLE", "native")
        # Documented semantics of torch 2.4's F.rms_norm; lets its use be tested on 1.13.
        def f_rms_norm(x, normalized_shape, weight=None, eps=None):
            calls.append((tuple(normalized_shape), weight, eps))
            dims = tuple(range(-len(normalized_shape), 0))
            return x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps)

        monkeypatch.setattr(rms_impl, "_f_rms_norm", f_rms_norm)
    return request.param, calls


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5, 7), (1, 1, 13), (4, 9)])
@pytest.mark.parametrize("offset", [0.0, 1.0])
@pytest.mark.parametrize("weight", [True, False])
@pytest.mark.parametrize("cast", [True, False])
def test_matches_llama_rms_norm(dtype, shape, offset, weight, cast, backend):
    norm = LlamaRMSNorm(shape[-1], 1e-6, dtype, offset, weight, cast)
    x = torch.randn(shape, dtype=dtype) * 3
    before = _dispatch.CALLS["rms_norm"]
    _, out = compare(
        lambda x, m: m(x),
        lambda x, m: ak.rms_norm(x, m.weight, m.variance_epsilon, offset=m.offset, cast_to_fp32=m.cast),
        [x],
        [norm],
        dtype=dtype,
        # A float64 input cast to float32 (as the original does) agrees to float32 precision.
        **(dict(rtol=1e-5, atol=1e-6) if cast and dtype == torch.float64 else {}),
    )
    assert out[0].dtype == dtype
    name, calls = backend
    if name == "fake_f_rms_norm":
        assert calls == [((shape[-1],), None, 1e-6)]
    else:
        # float32 with the float32 statistics is the compiled kernel's case; float64 is not
        compiled = cast and dtype == torch.float32
        assert (_dispatch.CALLS["rms_norm"] > before) == compiled


def test_float64_input_is_computed_in_float32_when_cast():
    x = torch.randn(3, 5, 7, dtype=torch.float64)
    out = ak.rms_norm(x, None, 1e-6)
    exact = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    assert not torch.equal(out, exact)
    torch.testing.assert_close(out, exact, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ak.rms_norm(x, None, 1e-6, cast_to_fp32=False), exact)


def test_bfloat16_input(backend):
    norm = LlamaRMSNorm(16, 1e-5, torch.bfloat16)
    x = torch.randn(2, 3, 16).to(torch.bfloat16)
    out = ak.rms_norm(x, norm.weight, 1e-5)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, norm(x))


def test_offset_applies_to_weight():
    x = torch.randn(3, 7, dtype=torch.float64)
    w = torch.randn(7, dtype=torch.float64)
    normed = ak.rms_norm(x, None, 1e-6, cast_to_fp32=False)
    torch.testing.assert_close(ak.rms_norm(x, w, 1e-6, offset=1.0, cast_to_fp32=False), (1.0 + w) * normed)


def test_eps_matters():
    x = torch.full((2, 4), 1e-3, dtype=torch.float64)
    small = ak.rms_norm(x, None, 1e-12, cast_to_fp32=False)
    large = ak.rms_norm(x, None, 1e-2, cast_to_fp32=False)
    torch.testing.assert_close(small, torch.ones_like(x), rtol=1e-5, atol=0)
    assert (large < 0.1).all()


def test_disabled_skips_f_rms_norm(monkeypatch):
    monkeypatch.setattr(rms_impl, "_f_rms_norm", lambda *a: pytest.fail("F.rms_norm used while disabled"))
    monkeypatch.setenv("ADOPT_DISABLE", "rms_norm")
    norm = LlamaRMSNorm(7, 1e-6, torch.float32)
    x = torch.randn(3, 7)
    torch.testing.assert_close(ak.rms_norm(x, norm.weight, 1e-6), norm(x))


class T5LayerNorm(nn.Module):
    """T5's RMSNorm: only the variance in float32, the input scaled in its own dtype."""

    def __init__(self, hidden_size, eps, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(hidden_size, dtype=dtype) + 0.5)
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        variance = hidden_states.to(torch.float32).pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        if self.weight.dtype in [torch.float16, torch.bfloat16]:
            hidden_states = hidden_states.to(self.weight.dtype)
        return self.weight * hidden_states


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5, 7), (1, 1, 13), (4, 9)])
def test_matches_t5_layer_norm(dtype, shape):
    norm = T5LayerNorm(shape[-1], 1e-6, dtype)
    x = torch.randn(shape, dtype=dtype) * 3
    before = _dispatch.CALLS["rms_norm"]
    _, out = compare(lambda x, m: m(x), lambda x, m: ak.rms_norm_variance_fp32(x, m.weight, m.variance_epsilon), [x], [norm], dtype=dtype)
    assert out[0].dtype == dtype
    # float32 input and weight: the LLaMA form exactly, run by the compiled kernel
    assert (_dispatch.CALLS["rms_norm"] > before) == (dtype == torch.float32)


def test_t5_half_input_with_float32_weight_stays_float32_like_the_original():
    norm = T5LayerNorm(16, 1e-6, torch.float32)
    x = (torch.randn(2, 3, 16) * 3).to(torch.bfloat16)
    expected = norm(x)
    out = ak.rms_norm_variance_fp32(x, norm.weight, norm.variance_epsilon)
    assert out.dtype == expected.dtype == torch.float32
    torch.testing.assert_close(out, expected)
