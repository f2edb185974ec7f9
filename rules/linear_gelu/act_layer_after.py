"""Rule example: an MLP that takes its activation as a class, nn.GELU by default."""
from typing import Type

import torch
from torch import nn

try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


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
        if (
            _adopt is not None
            and _adopt.enabled('linear_gelu')
            and _adopt.gelu_kind(self.act) is not None
            and _adopt.built_as(self.act, "torch.nn.GELU")
        ):
            h = _adopt.linear_gelu(x, self.fc_in, _adopt.gelu_kind(self.act))
        else:
            h = self.act(self.fc_in(x))
        return self.fc_out(self.drop(h))
