"""Rule example: a gated MLP whose GELU takes the tanh approximation by keyword (Gemma's MLP).

The activation handed to the kernel must carry the keyword: plain F.gelu is the exact GELU,
another function. A second block takes the approximation from an argument of forward.
"""
import torch
import torch.nn.functional as F
from torch import nn


class TanhGatedMLP(nn.Module):
    def __init__(self, hidden_size=16, intermediate_size=40):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = F.gelu(self.gate_proj(x), approximate="tanh")
        up = self.up_proj(x)
        return self.down_proj(gate * up)


class ChosenApproximationMLP(nn.Module):
    def __init__(self, hidden_size=16, intermediate_size=40):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor, approximate: str = "tanh") -> torch.Tensor:
        return self.down_proj(F.gelu(self.gate_proj(x), approximate=approximate) * self.up_proj(x))
