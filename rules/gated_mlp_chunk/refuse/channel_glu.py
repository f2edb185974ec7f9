import torch
from torch import nn


class ChannelGLU(nn.Module):
    """Gating over the channel dimension of a (batch, channels, ...) map: not the last one."""

    def __init__(self, dim=16):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.act = nn.SiLU()

    def forward(self, x):
        h = self.proj(x)  # refuse: is not chunk(2, dim=-1)
        a, b = h.chunk(2, dim=1)
        return self.act(a) * b
