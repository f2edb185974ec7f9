import torch
import torch.nn.functional as F

from .. import _dispatch
from .switches import enabled


def _compiled(x, weight, eps, offset):
    if _dispatch.small("rms_norm", 2 * x.numel() * x.element_size(), x):
        return None
    from ..kernels import rms_norm as kernel

    return kernel.rms_norm(x, weight, eps, offset)

# Looked up through this module so tests can stand in a fake on torch versions without it.
_f_rms_norm = getattr(F, "rms_norm", None)


def _normalise(h, eps):
    if _f_rms_norm is not None and enabled("rms_norm"):
        return _f_rms_norm(h, (h.size(-1),), None, eps)
    variance = h.pow(2).mean(-1, keepdim=True)
    return h * torch.rsqrt(variance + eps)


def rms_norm_variance_fp32(x, weight, eps):
    """Replaces the T5-style RMSNorm body, where only the variance is taken in float32::

        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + eps)
        return weight * x

    The scaled input keeps its own precision (float64 stays float64), and nothing is cast back:
    a half-precision input times the float32 reciprocal is float32, as in the original.
    For a float32 input and weight this is the LLaMA form exactly, so the compiled kernel runs it.
    """
    if x.dtype == torch.float32 and (weight is None or weight.dtype == torch.float32) and enabled("rms_norm"):
        out = _compiled(x, weight, eps, 0.0)
        if out is not None:
            return out
    variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    h = x * torch.rsqrt(variance + eps)
    return h if weight is None else weight * h


def rms_norm(x, weight, eps, offset=0.0, cast_to_fp32=True, keep_fp32=False):
    """Replaces the LLaMA-style RMSNorm body::

        input_dtype = x.dtype
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + eps)
        return (offset + weight) * x.to(input_dtype)

    ``weight`` may be None (no scaling); ``offset`` covers the ``1 + weight`` form of Gemma-like
    models. With ``cast_to_fp32=False`` everything stays in the input dtype. Like the
    original, ``cast_to_fp32`` also computes float64 inputs in float32. With ``keep_fp32`` the
    normalised float32 value is not cast back before the weight scales it (Gemma's order,
    ``(x * w).type_as(x)``, casts after the product): the result stays float32, or what the
    weight promotes it to, as the original product does.
    """
    if cast_to_fp32 and enabled("rms_norm") and (not keep_fp32 or x.dtype == torch.float32):
        # the compiled kernel computes the statistics in float32 for float32 and bfloat16 alike
        out = _compiled(x, weight, eps, offset)
        if out is not None:
            return out
    input_dtype = x.dtype
    h = x.to(torch.float32) if cast_to_fp32 else x
    h = _normalise(h, eps)
    if not (cast_to_fp32 and keep_fp32):
        h = h.to(input_dtype)
    if weight is None:
        return h
    if offset:
        weight = offset + weight
    return weight * h
