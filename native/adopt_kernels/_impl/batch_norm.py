"""Convolution/linear layers followed by batch norm: folded in eval mode, exact in training."""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .gelu import gelu_kind, linear_gelu
from .modules import is_plain, is_plain_linear
from .switches import enabled


def _batch_norm_as_module(bn, y):
    """``bn(y)`` without the module call, mirroring ``_BatchNorm.forward`` line for line.

    Running statistics, ``num_batches_tracked`` and the cumulative average used when
    ``momentum`` is None are updated exactly as the module updates them.
    """
    bn._check_input_dim(y)
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    use_batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    use_buffers = not bn.training or bn.track_running_stats
    return F.batch_norm(
        y,
        bn.running_mean if use_buffers else None,
        bn.running_var if use_buffers else None,
        bn.weight,
        bn.bias,
        use_batch_stats,
        factor,
        bn.eps,
    )


def _foldable(bn, out_features):
    return (
        not bn.training
        and bn.running_mean is not None
        and bn.running_var is not None
        and bn.num_features == out_features
    )


def _folded(weight, bias, bn):
    """Weight and bias of the layer that computes ``bn_eval(layer(x))`` in one op.

    Built from the live parameters each call, so gradients reach the layer's and the batch
    norm's parameters and later updates to either are picked up.
    """
    # computed in float32 at least and rounded once: in bfloat16 every step of the fold (the
    # rsqrt, the scale, the weight times it) rounded, and the folded layer had 1.7x the mean error
    # of the convolution and batch norm it replaces
    wide = torch.promote_types(weight.dtype, torch.float32)
    scale = torch.rsqrt(bn.running_var.to(wide) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.to(wide)
    mean = bn.running_mean.to(wide)
    shift = -mean * scale if bias is None else (bias.to(wide) - mean) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.to(wide)
    view = (-1,) + (1,) * (weight.dim() - 1)
    return (weight.to(wide) * scale.reshape(view)).to(weight.dtype), shift.to(weight.dtype)


def conv_bn(x, conv, bn):
    """Replaces ``bn(conv(x))`` for ``nn.Conv2d`` followed by ``nn.BatchNorm2d``.

    In eval mode with running statistics the batch norm is folded into the convolution's
    weight and bias (one convolution, no normalisation pass); otherwise the convolution runs
    and the batch norm is applied exactly as the module applies it.
    """
    if not (enabled("conv_bn") and is_plain(conv, nn.Conv2d) and is_plain(bn, nn.BatchNorm2d)):
        return bn(conv(x))
    if _foldable(bn, conv.out_channels):
        weight, bias = _folded(conv.weight, conv.bias, bn)
        # _conv_forward applies padding_mode (reflect, circular, ...) as Conv2d.forward does.
        return conv._conv_forward(x, weight, bias)
    return _batch_norm_as_module(bn, conv(x))


# Batch norms whose forward is exactly ``_BatchNorm.forward`` followed by ``self.drop`` and then
# ``self.act`` (timm's norm+act layers, built by ``get_norm_act_layer(nn.BatchNorm2d, ...)``).
# Named, not imported: the package does not depend on the libraries that define them.
NORM_ACT_CLASSES = ("timm.layers.norm_act.BatchNormAct2d",)


def _is_norm_act(bn):
    """True when ``bn`` is built by exactly one of NORM_ACT_CLASSES and calling it runs that
    class's forward on its own parameters (no hooks, no forward set on the instance)."""
    cls = type(bn)
    if f"{cls.__module__}.{cls.__qualname__}" not in NORM_ACT_CLASSES or not isinstance(bn, nn.BatchNorm2d):
        return False
    if not (isinstance(getattr(bn, "drop", None), nn.Module) and isinstance(getattr(bn, "act", None), nn.Module)):
        return False
    return is_plain(bn, cls)


def conv_bn_act(x, conv, bn):
    """Replaces ``bn(conv(x))`` for ``nn.Conv2d`` followed by a batch norm that also applies its
    ``drop`` and ``act`` submodules (timm's ``BatchNormAct2d``).

    The batch norm part is folded into the convolution in eval mode as :func:`conv_bn` folds
    it; the dropout and the activation then run as the module runs them.
    """
    if not (enabled("conv_bn") and x.dim() == 4 and is_plain(conv, nn.Conv2d) and _is_norm_act(bn)):
        return bn(conv(x))
    if _foldable(bn, conv.out_channels):
        weight, bias = _folded(conv.weight, conv.bias, bn)
        y = conv._conv_forward(x, weight, bias)
    else:
        y = _batch_norm_as_module(bn, conv(x))
    return bn.act(bn.drop(y))


def linear_bn(x, linear, bn):
    """Replaces ``bn(linear(x))`` for ``nn.Linear`` followed by ``nn.BatchNorm1d``.

    Only 2-D inputs are folded: for a 3-D input BatchNorm1d normalises dimension 1, which is
    not the linear layer's output dimension, so the batch norm is applied as the module would.
    """
    if not (enabled("linear_bn") and is_plain_linear(linear) and is_plain(bn, nn.BatchNorm1d)):
        return bn(linear(x))
    if x.dim() == 2 and _foldable(bn, linear.out_features):
        weight, bias = _folded(linear.weight, linear.bias, bn)
        return F.linear(x, weight, bias)
    return _batch_norm_as_module(bn, F.linear(x, linear.weight, linear.bias))


class FusedSequential(nn.Sequential):
    """Drop-in ``nn.Sequential``: same constructor, children and state_dict keys.

    Adjacent ``Conv2d -> BatchNorm2d``, ``Linear -> BatchNorm1d`` and ``Linear -> GELU`` children
    run through :func:`conv_bn` / :func:`linear_bn` / :func:`linear_gelu`; every other child is
    called as ``nn.Sequential`` calls it.
    """

    @classmethod
    def from_sequential(cls, sequential):
        """A FusedSequential sharing ``sequential``'s child modules (and so its parameters)."""
        return cls(OrderedDict(sequential._modules))

    def forward(self, input):
        children = list(self._modules.values())
        i = 0
        while i < len(children):
            module = children[i]
            following = children[i + 1] if i + 1 < len(children) else None
            if isinstance(module, nn.Conv2d) and isinstance(following, nn.BatchNorm2d):
                input = conv_bn(input, module, following)
                i += 2
            elif isinstance(module, nn.Linear) and isinstance(following, nn.BatchNorm1d):
                input = linear_bn(input, module, following)
                i += 2
            elif (
                isinstance(module, nn.Linear)
                and following is not None
                and enabled("linear_gelu")
                and gelu_kind(following) is not None
            ):
                input = linear_gelu(input, module, gelu_kind(following))
                i += 2
            else:
                input = module(input)
                i += 1
        return input
