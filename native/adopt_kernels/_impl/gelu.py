import functools

import torch
import torch.nn.functional as F
from torch import nn

from .. import _dispatch
from .modules import is_plain_conv1d, is_plain_linear, runs_its_forward
from .switches import enabled

_EXACT_NAMES = frozenset({"GELUActivation"})
_TANH_NAMES = frozenset(
    {"NewGELUActivation", "GELUTanh", "FastGELUActivation", "GELUPytorchTanh", "PytorchGELUTanh"}
)
_STRINGS = {
    "gelu": "none",
    "gelu_new": "tanh",
    "gelu_pytorch_tanh": "tanh",
    "gelu_fast": "tanh",
}
_EXACT_FUNCTIONS = tuple(
    f for f in (F.gelu, getattr(torch._C._nn, "gelu", None), getattr(torch, "gelu", None)) if f is not None
)


def _approximate_of_nn_gelu(act):
    # torch < 1.12 has no ``approximate`` attribute and only the exact form.
    approximate = getattr(act, "approximate", "none")
    return approximate if approximate in ("none", "tanh") else None


def _probe(act):
    """Numerically classify an unknown GELU-named module; None unless unambiguous.

    The probe spans the clipping range of clipped variants and distinguishes the exact form
    from the tanh form (they differ by up to ~5e-4; the tolerance is 1e-5).
    """
    device = torch.device("cpu")
    dtype = torch.float32
    for tensor in list(act.parameters()) + list(act.buffers()):
        device = tensor.device
        break
    x = torch.linspace(-12.0, 12.0, 961, dtype=dtype, device=device)
    try:
        with torch.no_grad():
            first = act(x.clone())
            second = act(x.clone())
    except Exception:
        return None
    if not isinstance(first, torch.Tensor) or first.shape != x.shape or not torch.equal(first, second):
        return None
    first = first.to(dtype)
    for kind in ("none", "tanh"):
        if torch.allclose(first, F.gelu(x, approximate=kind), rtol=1e-5, atol=1e-5):
            return kind
    return None


def gelu_kind(act):
    """'none' for an exact GELU, 'tanh' for the tanh approximation, None when not a GELU.

    Accepts modules, ``F.gelu`` (possibly a ``functools.partial`` setting ``approximate``) and
    the transformers ``hidden_act`` strings. Unknown classes are never judged by name alone:
    a class whose name mentions GELU is probed numerically, anything else is None. A module
    that calling would do more than its forward (hooks of its own or global module hooks, a
    forward set on the instance) is None: the fused kernel never calls it, so the original
    code must.
    """
    if isinstance(act, str):
        return _STRINGS.get(act)
    if isinstance(act, nn.Module) and not runs_its_forward(act):
        return None
    if isinstance(act, nn.GELU):
        if type(act).forward is not nn.GELU.forward:
            return _probe(act)
        return _approximate_of_nn_gelu(act)
    if any(act is f for f in _EXACT_FUNCTIONS):
        return "none"
    if isinstance(act, functools.partial) and any(act.func is f for f in _EXACT_FUNCTIONS):
        if act.args or set(act.keywords) - {"approximate"}:
            return None
        approximate = act.keywords.get("approximate", "none")
        return approximate if approximate in ("none", "tanh") else None
    if isinstance(act, nn.Module):
        name = type(act).__name__
        if name in _EXACT_NAMES:
            return "none"
        if name in _TANH_NAMES:
            return "tanh"
        if "gelu" in name.lower():
            return _probe(act)
    return None


def _weight_out_in(linear):
    """The layer's weight as (out, in), where it is a plain linear layer with a bias: nn.Linear's
    own, or transformers' Conv1D's (stored (in, out)) as a transposed view; else None."""
    if is_plain_linear(linear) and linear.bias is not None:
        return linear.weight
    if is_plain_conv1d(linear):
        return linear.weight.t()
    return None


def linear_gelu(x, linear, approximate="none"):
    """Replaces ``gelu(linear(x))`` with ``gelu`` exact (``'none'``) or tanh-approximated.

    For a plain ``nn.Linear`` with a bias, or transformers' ``Conv1D`` (GPT-2's MLP), on CPU in
    float32 and bfloat16 or on CUDA (also in float16), the product runs in BLAS and one compiled
    (CPU) or Triton (CUDA) pass applies GELU, adding the bias on the way (on the CPU in bfloat16
    the product takes the bias, so that it rounds once, as the original's does).
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    weight = _weight_out_in(linear) if enabled("linear_gelu") else None
    if weight is not None and _dispatch.small("bias_gelu", 2 * x.numel() // max(1, weight.size(1)) * weight.size(0) * x.element_size(), x):
        weight = None
    if weight is not None:
        from ..kernels import bias_gelu as kernel

        out = kernel.linear_gelu(x, weight, linear.bias, approximate)
        if out is not None:
            return out
    h = F.linear(x, linear.weight, linear.bias) if is_plain_linear(linear) else linear(x)
    return F.gelu(h, approximate=approximate)
