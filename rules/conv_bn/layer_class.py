"""Rule example: blocks that take their norm layer as a class, BatchNorm2d by default."""
from functools import partial
from typing import Optional, Type

import torch
from torch import nn


def conv_norm(in_channels, out_channels, norm_layer: Optional[Type[nn.Module]] = None):
    norm_layer = norm_layer or nn.BatchNorm2d
    return nn.Sequential(*[
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
        y = self.conv1(x)
        y = self.bn1(y)
        y = torch.relu(y)
        y = self.bn2(self.conv2(y))
        return y + self.shortcut(x)
