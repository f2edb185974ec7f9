import torch
from torch import nn


class ChannelRMSNorm(nn.Module):
    """Normalises over the channels of a (batch, channels, length) map: dim 1, not the last."""

    def __init__(self, channels=24, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels, 1))

    def forward(self, x):
        h = x.float()  # refuse: not the last dimension
        h = h * torch.rsqrt(h.pow(2).mean(1, keepdim=True) + self.eps)
        return (h * self.weight).type_as(x)
