"""Refuse case: GELU gating another projection of the same input is a gated MLP."""
import torch.nn.functional as F
from torch import nn


class GeluGatedMlp(nn.Module):
    def __init__(self, dim=32, hidden=64):
        super().__init__()
        self.gate = nn.Linear(dim, hidden)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)

    def forward(self, x):
        g = self.gate(x)  # refuse: a gated MLP
        return self.down(F.gelu(g) * self.up(x))
