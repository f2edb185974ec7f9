"""Rule example: an RMSNorm with a (1 + weight) scale applied to the float32 value, cast back
to the input's dtype after the product."""
import torch
from torch import nn


class OffsetRMSNorm(nn.Module):
    def __init__(self, dim=24, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(0.1 * torch.randn(dim))

    def forward(self, x):
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (h * (1 + self.scale.float())).to(x.dtype)
