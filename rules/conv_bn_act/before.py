"""Rule example: a conv and a norm+act layer, both chosen by factories from layer classes."""
import functools

import torch
from torch import nn


class BatchNormAct2d(nn.BatchNorm2d):
    """Batch norm, then dropout, then activation, in one module (keys of a plain BatchNorm2d)."""

    def __init__(self, num_features, act_layer=nn.ReLU, drop_layer=None):
        super().__init__(num_features)
        self.drop = drop_layer() if drop_layer is not None else nn.Identity()
        self.act = act_layer()

    def forward(self, x):
        x = super().forward(x)
        return self.act(self.drop(x))


_NORM_ACT = dict(batchnorm2d=BatchNormAct2d)


def get_norm_act_layer(norm_layer, act_layer=None):
    if norm_layer is None:
        return None
    layer = _NORM_ACT.get(norm_layer.__name__.lower())
    assert layer is not None, f"no norm+act layer for {norm_layer.__name__}"
    return functools.partial(layer, act_layer=act_layer)


def make_conv(in_chs, out_chs, kernel_size, **kwargs):
    if isinstance(kernel_size, list):
        raise ValueError("mixed kernel sizes are not supported here")
    return nn.Conv2d(in_chs, out_chs, kernel_size, padding=kernel_size // 2, **kwargs)


class NormActBlock(nn.Module):
    def __init__(self, in_chs=3, out_chs=8, norm_layer=nn.BatchNorm2d, act_layer=nn.SiLU):
        super().__init__()
        norm_act_layer = get_norm_act_layer(norm_layer, act_layer)
        self.conv = make_conv(in_chs, out_chs, 3, bias=False)
        self.bn1 = norm_act_layer(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.bn1(x)
        return x
