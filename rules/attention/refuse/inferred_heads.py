"""Scores viewed per head with the head count left to torch (-1) before the mask is added: the
kernel needs the count, and is never handed -1."""
import torch
from torch import nn


class InferredHeadsAttention(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (p(x).view(b, n, self.heads, self.head_dim).transpose(1, 2).reshape(b * self.heads, n, self.head_dim) for p in (self.q, self.k, self.v))
        scores = torch.bmm(q, k.transpose(1, 2))  # refuse: is here without 'mv = view(f, _, $heads, _, _)?'
        scores = scores.view(b, -1, n, n) + mask
        scores = scores.view(b * self.heads, n, n)
        probs = torch.softmax(scores, dim=-1)
        return torch.bmm(probs, v).view(b, self.heads, n, self.head_dim).transpose(1, 2).reshape(b, n, d)
