"""A backward with ``create_graph=True`` through a Triton kernel: the kernels' gradients cannot
be differentiated again, so it is refused with the remedy (``ADOPT_DISABLE``), never a silent
second-order gradient of zero; a plain backward still runs. On a CUDA device where there is
one, else in Triton's interpreter."""

import pytest
import torch


from test_gpu_kernels import DEVICE, _triton_path  # noqa: F401  (sets Triton's interpreter up)

import adopt_kernels as ak
from adopt_kernels import _dispatch


def _leaf(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(DEVICE).requires_grad_()


def _rms(x, w):
    return ak.rms_norm(x, w, 1e-6)


def _softmax(x, _w):
    return ak.softmax(x, dim=-1)


def _layer_norm(x, _w):
    ln = torch.nn.LayerNorm(x.size(-1)).to(DEVICE)
    return ak.dropout_add_layer_norm(x, torch.zeros_like(x), ln, torch.nn.Dropout(0.0), training=False)


CASES = {"rms_norm": _rms, "softmax": _softmax, "dropout_add_layer_norm": _layer_norm}


@pytest.mark.parametrize("switch", sorted(CASES))
def test_create_graph_through_a_triton_kernel_is_refused_with_the_remedy(switch):
    x, w = _leaf(4, 64, seed=1), _leaf(64, seed=2)
    with _dispatch.at_any_size():
        y = CASES[switch](x, w)
    assert y.grad_fn is not None and "Backward" in type(y.grad_fn).__name__
    with pytest.raises(RuntimeError, match=f"ADOPT_DISABLE={switch} runs the torch code"):
        torch.autograd.grad(y.pow(2).sum(), (x,), create_graph=True)


@pytest.mark.parametrize("switch", sorted(CASES))
def test_a_plain_backward_through_a_triton_kernel_still_runs(switch):
    x, w = _leaf(4, 64, seed=1), _leaf(64, seed=2)
    with _dispatch.at_any_size():
        y = CASES[switch](x, w)
    y.pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_the_refusal_is_what_stands_between_create_graph_and_a_zero(monkeypatch):
    """Negative control: without the refusal the second-order gradient through the Triton RMSNorm
    is silently absent, which the refusal exists to prevent."""
    from adopt_kernels.gpu import rms_norm as G

    monkeypatch.setattr(G._RMSNorm, "backward", staticmethod(G._RMSNorm.backward.__wrapped__))
    x, w = _leaf(4, 64, seed=1), _leaf(64, seed=2)
    with _dispatch.at_any_size():
        y = ak.rms_norm(x, w, 1e-6)
    (gw,) = torch.autograd.grad(y.pow(2).sum(), (w,), create_graph=True)
    assert not gw.requires_grad  # nothing to differentiate again: the silent zero

