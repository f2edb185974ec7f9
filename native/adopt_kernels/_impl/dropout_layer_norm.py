import numbers

import torch
import torch.nn.functional as F
from torch import nn

from .. import _dispatch
from .modules import is_plain
from .switches import enabled


def _dropout_p(dropout):
    if isinstance(dropout, nn.Dropout):
        return float(dropout.p)
    if isinstance(dropout, numbers.Real):
        return float(dropout)
    raise TypeError(f"dropout must be an nn.Dropout or a float, got {type(dropout).__name__}")


def _compiled(x, residual, layer_norm, dropout, training):
    """The compiled kernel's result, or None where it does not apply: a plain ``nn.LayerNorm``
    over the last dim and a plain ``nn.Dropout`` or probability (the kernel checks the rest)."""
    # a call with dropout takes the training floor whatever the grad mode (_dispatch.cpu_floor)
    drops = True if training and isinstance(dropout, (nn.Dropout, numbers.Real)) and _dropout_p(dropout) > 0 else None
    if isinstance(x, torch.Tensor) and _dispatch.small("layer_norm", 3 * x.numel() * x.element_size(), x, drops):
        return None
    if not enabled("dropout_add_layer_norm") or not is_plain(layer_norm, nn.LayerNorm):
        return None
    if isinstance(dropout, nn.Module) and not is_plain(dropout, nn.Dropout):
        return None
    if len(layer_norm.normalized_shape) != 1 or not isinstance(x, torch.Tensor) or x.dim() == 0:
        return None
    if layer_norm.normalized_shape[0] != x.size(-1):
        return None
    p = _dropout_p(dropout) if training else 0.0
    from ..kernels import layer_norm as kernel

    return kernel.dropout_add_layer_norm(x, residual, layer_norm.weight, layer_norm.bias, layer_norm.eps, p)


def dropout_add_layer_norm(x, residual, layer_norm, dropout, training):
    """Replaces ``layer_norm(dropout(x) + residual)``.

    ``layer_norm`` is an ``nn.LayerNorm`` (affine or not); ``dropout`` an ``nn.Dropout`` or
    its probability. Dropout is applied only when ``training``; for a plain ``nn.Dropout``, only
    when the module itself is in training mode, as calling it would.

    On CPU in float32 and bfloat16, with a plain ``nn.LayerNorm`` over the last dim, and a call
    at or above the kernel's size floor (``_dispatch.cpu_floor``: below it the torch code runs,
    dropout through ``F.dropout``, so the random stream a seeded run draws depends on the size;
    a call with dropout takes the training floor in both passes of checkpointing), the
    compiled kernel runs (on CUDA, in float16 too, the Triton kernel, rows of up to 16384):
    its dropout mask comes from its own counter-based generator, seeded
    by one draw of torch's default generator (so it is reproducible under
    ``torch.manual_seed``, keeps each element with probability ``1 - p``, on CPU with ``p`` to
    the nearest 1/65536, and scales kept ones by ``1 / (1 - p)``), and the backward regenerates the same mask. Elsewhere (and with
    ``ADOPT_DISABLE=native``) dropout goes through ``F.dropout`` with the same arguments the
    module uses, so it draws from the RNG exactly as the original does and a seeded run gives
    bit-identical masks. Modules carrying hooks or their own forward are called as they are.
    """
    if isinstance(dropout, nn.Dropout) and is_plain(dropout, nn.Dropout):
        # the module's own mode decides in the original, whatever its parent's: MC dropout
        # (`model.eval()`, then `.train()` on the dropout modules) and dropout switched off in
        # training (`.eval()` on them) alike
        training = dropout.training
    out = _compiled(x, residual, layer_norm, dropout, training)
    if out is not None:
        return out
    if isinstance(dropout, nn.Module) and not is_plain(dropout, nn.Dropout):
        x = dropout(x)
    elif training:
        x = F.dropout(x, _dropout_p(dropout), training=True)
    h = x + residual
    if not is_plain(layer_norm, nn.LayerNorm):
        return layer_norm(h)
    return F.layer_norm(h, layer_norm.normalized_shape, layer_norm.weight, layer_norm.bias, layer_norm.eps)
