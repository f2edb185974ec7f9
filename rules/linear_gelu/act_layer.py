"""Rule example: an MLP that takes its activation as a class, nn.GELU by default."""
from typing import Type

import torch
from torch import nn


class ActLayerMlp(nn.Module):
    def __init__(self, dim=32, hidden=64, act_layer: Type[nn.Module] = nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        x = self.act(x)
        return self.fc2(x)
