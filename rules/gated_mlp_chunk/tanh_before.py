"""Rule example: GEGLU with the tanh approximation of GELU, the gate the first half of the
projection. The activation handed to the kernel must keep the keyword."""
import torch
import torch.nn.functional as F
from torch import nn


class TanhGEGLU(nn.Module):
    def __init__(self, dim_in=16, dim_out=24):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, x = self.proj(x).chunk(2, dim=-1)
        return F.gelu(gate, approximate="tanh") * x
