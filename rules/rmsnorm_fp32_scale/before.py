"""Rule example: Gemma-style RMSNorm, the (1 + weight) scaling done in float32 before the cast."""
import torch
from torch import nn


class OffsetRMSNorm(nn.Module):
    def __init__(self, dim=24, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(0.1 * torch.randn(dim))

    def _norm(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x):
        output = self._norm(x.float())
        output = output * (1.0 + self.weight.float())
        return output.type_as(x)
