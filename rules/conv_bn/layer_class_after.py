"""Rule example: blocks that take their norm layer as a class, BatchNorm2d by default."""
from functools import partial
from typing import Optional, Type

import torch
from torch import nn

try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


def conv_norm(in_channels, out_channels, norm_layer: Optional[Type[nn.Module]] = None):
    norm_layer = norm_layer or nn.BatchNorm2d
    return (_adopt.FusedSequential if _adopt is not None and _adopt.enabled('conv_bn') else nn.Sequential)(*[
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        norm_layer(out_channels),
    ])


class LayerClassBlock(nn.Module):
    def __init__(self, in_channels=3, out_channels=8, norm_layer: Type[nn.Module] = nn.BatchNorm2d, eps_layer=None):
        super().__init__()
        eps_layer = eps_layer or partial(nn.BatchNorm2d, eps=1e-3)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = norm_layer(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = eps_layer(out_channels)
        self.shortcut = conv_norm(in_channels, out_channels, norm_layer=norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            _adopt is not None
            and _adopt.enabled('conv_bn')
            and _adopt.built_as(self.bn1, "torch.nn.BatchNorm2d")
        ):
            y = _adopt.conv_bn(x, self.conv1, self.bn1)
        else:
            y = self.conv1(x)
            y = self.bn1(y)
        y = torch.relu(y)
        if (
            _adopt is not None
            and _adopt.enabled('conv_bn')
            and _adopt.built_as(self.bn2, "torch.nn.BatchNorm2d")
        ):
            y = _adopt.conv_bn(y, self.conv2, self.bn2)
        else:
            y = self.bn2(self.conv2(y))
        return y + self.shortcut(x)
