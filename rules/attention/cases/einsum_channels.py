"""Rule case: channels-first einsum attention with the scale split over q and k."""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import einsum, nn


class ChannelAttention(nn.Module):
    """Attention over the positions of a (batch, channels, length) map, the scale split over q and k."""

    def __init__(self, channels: int = 16, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bs, width, length = x.shape
        ch = width // self.heads
        q, k, v = self.qkv(x).reshape(bs * self.heads, ch * 3, length).split(ch, dim=1)
        scale = 1 / math.sqrt(math.sqrt(ch))
        weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
        a = torch.einsum("bts,bcs->bct", weight, v)
        return self.proj(a.reshape(bs, -1, length)) + x
