import torch
from torch import nn


class RMSNorm(nn.Module):
    """RMSNorm computed in the input's dtype: the kernel's float32 upcast would change the result."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        norm = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)  # refuse: has no 'c = to($x, dtype=torch.float32)'
        return norm * self.weight
