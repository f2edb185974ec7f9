"""RMSNorm over the last two dims (heads x head_dim): the kernel normalises the last one only."""
import torch
from torch import nn


class RMSNorm2d(nn.Module):
    def __init__(self, heads=4, dim=6, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(heads, dim))
        self.eps = eps

    def forward(self, x):
        input_dtype = x.dtype
        x = x.to(torch.float32)  # refuse: is over dim=(-2, -1): a reduction over more than the last dimension
        variance = x.pow(2).mean(dim=(-2, -1), keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        return self.weight * x.to(input_dtype)
