import torch
from torch import nn


class GroupRMSNorm(nn.Module):
    """Normalises over the last two dims (heads x head_dim) at once: more than the kernel's last dim."""

    def __init__(self, heads=4, dim=6, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(heads, dim))

    def forward(self, x):
        h = x.float()  # refuse: a reduction over more than the last dimension
        h = h * torch.rsqrt(h.pow(2).mean((-2, -1), keepdim=True) + self.eps)
        return (h * self.weight).type_as(x)
