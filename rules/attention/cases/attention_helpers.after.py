"""Attention whose mask comes through small helpers, and einsum equations written as f-strings,
in the style of current vision and diffusion model code."""

from typing import Optional

import torch
from torch import einsum, nn

try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


def add_optional_mask(scores: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    return scores if mask is None else scores + mask


def additive_bias(n: int, like: torch.Tensor, mask: Optional[torch.Tensor] = None, causal: bool = False) -> Optional[torch.Tensor]:
    # a float bias the scores can take: -inf above the diagonal, or where a boolean mask is False
    if causal:
        return like.new_full((n, n), float("-inf")).triu_(1)
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros_like(mask, dtype=like.dtype).masked_fill_(~mask, float("-inf"))
    return mask


class MaskHelperAttention(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4, attn_drop: float = 0.0):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q = q * self.scale
        bias = additive_bias(n, torch.empty((), dtype=(_adopt.product_dtype(q, k.transpose(-2, -1)) if _adopt is not None else torch.matmul(q[..., :1, :], k.transpose(-2, -1)[..., :, :1]).dtype), device=q.device), attn_mask, is_causal)
        if (
            _adopt is not None
            and _adopt.enabled('attention')
            and _adopt.attention_supported(q, k.transpose(-2, -1), v)
        ):
            x = _adopt.attention(
                q,
                k,
                v,
                mask=bias,
                scale=1.0,
                dropout_p=self.attn_drop,
                training=self.training,
                mask_added=True,
            )
        else:
            attn = q @ k.transpose(-2, -1)  # site attention begins: q @ k^T of a pre-scaled query, a bias built from the scores' dtype and device by a helper, the mask added through 'x if m is None else x + m', softmax, dropout, @ v
            attn = add_optional_mask(attn, bias)
            attn = attn.softmax(dim=-1)  # site softmax: softmax over dim=-1
            attn = self.attn_drop(attn)
            x = attn @ v  # site attention ends
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class FStringEinsumAttention(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.attn_dropout = nn.Dropout(dropout)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        if (
            _adopt is not None
            and _adopt.enabled('attention')
            and _adopt.attention_supported(q, k.transpose(-2, -1), v)
        ):
            out = _adopt.attention(
                q,
                k,
                v,
                mask=None,
                scale=self.scale,
                dropout_p=self.attn_dropout,
                training=self.training,
            )
        else:
            sim = einsum(f"b h i d, b h j d -> b h i j", q, k) * self.scale  # site attention begins: einsum with an f-string equation (no placeholders) * scale, softmax, dropout, einsum with v
            attn = sim.softmax(dim=-1)  # site softmax: softmax over dim=-1
            attn = self.attn_dropout(attn)
            out = einsum(f"b h i j, b h j d -> b h i d", attn, v)  # site attention ends
        return self.to_out(out.transpose(1, 2).reshape(b, n, d))
