"""Rule example: an MLP that takes its activation as a class, nn.GELU by default."""
from typing import Type

import torch
from torch import nn


class ActLayerMlp(nn.Module):
    """A feed-forward layer whose activation class a caller may replace."""

    def __init__(self, dim=32, mlp_ratio=2.0, act_layer: Type[nn.Module] = nn.GELU, drop=0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc_in = nn.Linear(dim, hidden)
        self.act = act_layer()
        self.drop = nn.Dropout(drop)
        self.fc_out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc_in(x))
        return self.fc_out(self.drop(h))
