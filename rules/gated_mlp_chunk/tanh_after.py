"""Rule example: GEGLU with the tanh approximation of GELU, the gate the first half of the
projection. The activation handed to the kernel must keep the keyword."""
import torch
import torch.nn.functional as F
from torch import nn

import functools  # adopt
try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


class TanhGEGLU(nn.Module):
    def __init__(self, dim_in=16, dim_out=24):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, x = self.proj(x).chunk(2, dim=-1)
        return (_adopt.gated_act(gate, x, functools.partial(torch.nn.functional.gelu, approximate="tanh")) if _adopt is not None and _adopt.enabled('gated_mlp') else F.gelu(gate, approximate="tanh") * x)
