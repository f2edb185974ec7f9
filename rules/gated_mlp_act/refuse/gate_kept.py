import torch
from torch import nn


class GateKept(nn.Module):
    """The activated gate is kept for a second use: the product alone cannot replace it."""

    def __init__(self, dim=16, inner=24):
        super().__init__()
        self.gate = nn.Linear(dim, inner)
        self.up = nn.Linear(dim, inner)
        self.act = nn.SiLU()

    def forward(self, x):
        g = self.act(self.gate(x))  # refuse: also used
        h = g * self.up(x)
        return h, g.mean()
