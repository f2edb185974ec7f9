import torch

from .. import _dispatch
from .switches import enabled


def _compiled(x):
    if _dispatch.small("softmax", 2 * x.numel() * x.element_size(), x):
        return None
    from ..kernels import softmax as kernel

    return kernel.softmax(x)


def softmax(x, dim=-1, dtype=None):
    """Replaces ``torch.softmax(x, dim=dim, dtype=dtype)`` (and ``F.softmax``/``x.softmax``).

    Over the last dimension of a float32/bfloat16 CPU tensor, with no ``dtype`` cast, the compiled
    kernel runs (arithmetic in float32, output in ``x``'s dtype, as torch computes it), and of a
    float32/bfloat16/float16 CUDA tensor the Triton kernel; anything else is torch's own
    softmax. A positive ``dim`` naming the last axis counts as the last.
    """
    if dim < 0:
        dim += x.dim()
    if x.dim() > 0 and dim == x.dim() - 1:
        dim = -1
        if (dtype is None or dtype == x.dtype) and enabled("softmax"):
            out = _compiled(x)
            if out is not None:
                return out
    return torch.softmax(x, dim=dim, dtype=dtype)
