"""Rule example: RMSNorm whose statistics come from a helper method, cast back with type_as."""
import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim=24, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim) + 0.1 * torch.randn(dim))

    def _norm(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x):
        output = self._norm(x.float()).type_as(x)
        return output * self.weight
