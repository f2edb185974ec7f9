"""Rule example: an MLP that takes its activation as a class, nn.GELU by default."""
from typing import Type

import torch
from torch import nn

try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


class ActLayerMlp(nn.Module):
    def __init__(self, dim=32, hidden=64, act_layer: Type[nn.Module] = nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            _adopt is not None
            and _adopt.enabled('linear_gelu')
            and _adopt.gelu_kind(self.act) is not None
            and _adopt.built_as(self.act, "torch.nn.GELU")
        ):
            x = _adopt.linear_gelu(x, self.fc1, _adopt.gelu_kind(self.act))
        else:
            x = self.fc1(x)
            x = self.act(x)
        return self.fc2(x)
