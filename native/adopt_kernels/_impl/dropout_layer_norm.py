import numbers

import torch.nn.functional as F
from torch import nn

from .modules import is_plain


def _dropout_p(dropout):
    if isinstance(dropout, nn.Dropout):
        return float(dropout.p)
    if isinstance(dropout, numbers.Real):
        return float(dropout)
    raise TypeError(f"dropout must be an nn.Dropout or a float, got {type(dropout).__name__}")


def dropout_add_layer_norm(x, residual, layer_norm, dropout, training):
    """Replaces ``layer_norm(dropout(x) + residual)``.

    ``layer_norm`` is an ``nn.LayerNorm`` (affine or not); ``dropout`` an ``nn.Dropout`` or
    its probability. Dropout is applied only when ``training``, through ``F.dropout`` with the
    same arguments the module uses, so it draws from the RNG exactly as the original does and
    a seeded run gives bit-identical masks. Modules carrying hooks or their own forward are
    called as they are.
    """
    if isinstance(dropout, nn.Module) and not is_plain(dropout, nn.Dropout):
        x = dropout(x)
    elif training:
        x = F.dropout(x, _dropout_p(dropout), training=True)
    h = x + residual
    if not is_plain(layer_norm, nn.LayerNorm):
        return layer_norm(h)
    return F.layer_norm(h, layer_norm.normalized_shape, layer_norm.weight, layer_norm.bias, layer_norm.eps)
