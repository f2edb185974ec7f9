"""Refuse case: the norm layer is a parameter whose default is GroupNorm, not BatchNorm2d."""
from functools import partial

import torch
from torch import nn


class GroupNormBlock(nn.Module):
    def __init__(self, channels=8, norm_layer=partial(nn.GroupNorm, 2)):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm = norm_layer(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x)))  # refuse: no 'b = BatchNorm2d(...)' follows
