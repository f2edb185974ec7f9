"""Scores soft-capped with tanh through a helper before the softmax: the kernel does not take it."""
import torch
import torch.nn.functional as F
from torch import nn


def soft_cap(scores: torch.Tensor, cap: float) -> torch.Tensor:
    return torch.tanh(scores / cap) * cap


class SoftCappedAttention(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4, softcap: float = 30.0):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.softcap = softcap
        self.qkv = nn.Linear(dim, dim * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) * self.head_dim**-0.5  # refuse: soft-capped (tanh(s / cap) * cap) before the softmax at line 23
        scores = soft_cap(scores, self.softcap)
        attn = F.softmax(scores, dim=-1)
        return (attn @ v).transpose(1, 2).reshape(b, n, d)
