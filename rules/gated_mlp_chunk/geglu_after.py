"""Rule example: GEGLU, the gate taken as the second half of the projection."""
import torch
import torch.nn.functional as F
from torch import nn

try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


class GEGLU(nn.Module):
    def __init__(self, dim_in=16, dim_out=24):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return (_adopt.gated_act(gate, x, torch.nn.functional.gelu) if _adopt is not None and _adopt.enabled('gated_mlp') else x * F.gelu(gate))
