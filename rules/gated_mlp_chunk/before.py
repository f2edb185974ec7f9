"""Rule example: a SwiGLU feed-forward block whose gate and up projections are one Linear,
split and gated inside the down projection's call."""
import torch
import torch.nn.functional as F
from torch import nn


class FusedGateUpMLP(nn.Module):
    def __init__(self, dim=16, hidden=40):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * up)
