"""Rule example: attention written as module-level functions that a module calls. No `self` is
in scope there, so the rewrite reads only what each function has."""
import torch
import torch.nn.functional as F
from torch import nn


def attend(q, k, v, scale, mask=None):
    # no dropout: the kernel's training flag changes nothing
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, -1e4)
    probs = scores.softmax(dim=-1)
    return torch.einsum("bhqk,bhkd->bhqd", probs, v)


def attend_with_dropout(q, k, v, scale, dropout_p, training):
    # the dropout says itself whether it drops: the function's training argument
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    probs = F.softmax(scores, dim=-1)
    probs = F.dropout(probs, p=dropout_p, training=training)
    return torch.matmul(probs, v)


def attend_kept(q, k, v, scale, mask):
    # the fill has the dtype of the scaled scores, which the rewrite reads off the operands
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) * scale
    scores = torch.where(mask, scores, torch.tensor(-1e4, dtype=scores.dtype))
    probs = scores.softmax(dim=-1)
    return torch.einsum("bhqk,bhkd->bhqd", probs, v)


class FunctionScopeAttention(nn.Module):
    def __init__(self, dim=32, heads=4, dropout=0.0):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        keep = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        scale = self.head_dim ** -0.5
        y = attend(q, k, v, scale, keep)
        y = y + attend_with_dropout(q, k, v, scale, self.dropout, self.training)
        y = y + attend_kept(q, k, v, scale, keep)
        return self.out(y.transpose(1, 2).reshape(b, n, c))
