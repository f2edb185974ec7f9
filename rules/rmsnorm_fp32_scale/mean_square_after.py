"""Rule example: RMSNorm written with torch.mean(x * x), a configurable dim and an optional unit
offset chosen under a conditional expression."""
import torch
from torch import nn

try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


class MeanSquareRMSNorm(nn.Module):
    def __init__(self, size=24, dim=-1, eps=1e-6, add_unit_offset=True):
        super().__init__()
        self.weight = nn.Parameter(0.1 * torch.randn(size))
        self.eps = eps
        self.dim = dim
        self.add_unit_offset = add_unit_offset

    def forward(self, x):
        dtype = x.dtype
        weight = (1 + self.weight) if self.add_unit_offset else self.weight
        if _adopt is not None and _adopt.enabled('rms_norm') and self.dim == -1:
            _adopt_y = _adopt.rms_norm(
                x, weight.float(), self.eps, cast_to_fp32=True, keep_fp32=True
            )
            return (_adopt_y).to(dtype=dtype)
        else:
            x = x.float()
            norm_x = torch.mean(x * x, dim=self.dim, keepdim=True)
            x_normed = x * torch.rsqrt(norm_x + self.eps)
            return (x_normed * weight.float()).to(dtype=dtype)
