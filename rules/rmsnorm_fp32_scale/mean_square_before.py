"""Rule example: RMSNorm written with torch.mean(x * x), a configurable dim and an optional unit
offset chosen under a conditional expression."""
import torch
from torch import nn


class MeanSquareRMSNorm(nn.Module):
    def __init__(self, size=24, dim=-1, eps=1e-6, add_unit_offset=True):
        super().__init__()
        self.weight = nn.Parameter(0.1 * torch.randn(size))
        self.eps = eps
        self.dim = dim
        self.add_unit_offset = add_unit_offset

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        norm_x = torch.mean(x * x, dim=self.dim, keepdim=True)
        x_normed = x * torch.rsqrt(norm_x + self.eps)
        weight = (1 + self.weight) if self.add_unit_offset else self.weight
        return (x_normed * weight.float()).to(dtype=dtype)
