"""Rule example: a channels-first feed-forward of 1x1 convolutions with GELU between them."""
import torch
from torch import nn


class ConvFeedForward(nn.Module):
    def __init__(self, dim=8, mult=2):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(dim, dim * mult, 1),
            nn.GELU(),
            nn.Conv2d(dim * mult, dim, 1),
        )
        self.proj = nn.Conv2d(dim, dim * mult, 3, padding=1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        # a 3x3 convolution mixes neighbours: not a pointwise linear
        return self.act(self.proj(y))
