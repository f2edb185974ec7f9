import torch
from torch import nn


class GateKept(nn.Module):
    """The activated gate is also returned: the product alone cannot replace it."""

    def __init__(self, dim=16):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * dim)
        self.act = nn.GELU()

    def forward(self, x):
        gate, up = self.proj(x).chunk(2, dim=-1)  # refuse: also used
        g = self.act(gate)
        return g * up, g
