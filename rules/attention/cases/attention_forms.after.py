"""Attention blocks written the ways vision, diffusion and LLM training code writes them."""

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import einsum, nn

try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


@dataclass
class MixedAttentionConfig:
    dim: int = 32
    heads: int = 4
    channels: int = 16
    softcap: float = 30.0


def soft_cap(scores: torch.Tensor, cap: float) -> torch.Tensor:
    return torch.tanh(scores / cap) * cap


class SpacedEinsumAttention(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.attend = nn.Softmax(dim=-1)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2).reshape(b * self.heads, n, -1) for t in (q, k, v))
        if (
            _adopt is not None
            and _adopt.enabled('attention')
            and _adopt.attention_supported(q, k.transpose(-2, -1), v)
            and _adopt.built_with(self.attend, "torch.nn.Softmax", dim=-1)
        ):
            out = _adopt.attention(
                q, k, v, mask=None, scale=self.scale, dropout_p=0.0, training=False
            )
        else:
            dots = einsum('b i d, b j d -> b i j', q, k) * self.scale  # site attention begins: einsum 'b i d, b j d -> b i j' * scale, an assert between the statements, nn.Softmax module, einsum with v
            assert dots.shape[-1] == n
            attn = self.attend(dots)  # site softmax: nn.Softmax(dim=-1) module
            out = einsum('b i j, b j d -> b i d', attn, v)  # site attention ends
        out = out.reshape(b, self.heads, n, -1).transpose(1, 2).reshape(b, n, d)
        return self.to_out(out)


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
        if (
            _adopt is not None
            and _adopt.enabled('attention')
            and _adopt.attention_supported(
                (q * scale).transpose(-2, -1), k * scale, v.transpose(-2, -1)
            )
        ):
            a = _adopt.attention(
                (q * scale).transpose(-2, -1),
                (k * scale).transpose(-2, -1),
                v.transpose(-2, -1),
                mask=None,
                scale=1.0,
                dropout_p=0.0,
                training=False,
                cast_dtype=torch.float32,
            ).transpose(-2, -1)
        else:
            weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)  # site attention begins: einsum 'bct,bcs->bts' with the scale split over q and k, softmax in float32, einsum 'bts,bcs->bct' with v (channels first)
            weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)  # site softmax: softmax over dim=-1
            a = torch.einsum("bts,bcs->bct", weight, v)  # site attention ends
        return self.proj(a.reshape(bs, -1, length)) + x


class InPlaceScaledAttention(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if (
            _adopt is not None
            and _adopt.enabled('attention')
            and _adopt.attention_supported(q, k.transpose(-2, -1), v)
        ):
            _adopt_o = _adopt.attention(
                q,
                k,
                v,
                mask=mask,
                scale=1.0 / (math.sqrt(self.head_dim)),
                dropout_p=0.0,
                training=False,
                mask_added=True,
            )
            out = (_adopt_o).transpose(1, 2).reshape(b, n, d)
        else:
            logits = q @ k.transpose(-2, -1)  # site attention begins: scores divided in place (logits.div_), additive mask under 'if mask is not None', softmax, @ v
            logits.div_(math.sqrt(self.head_dim))
            if mask is not None:
                logits = logits + mask
            attn = logits.softmax(dim=-1)  # site softmax: softmax over dim=-1
            out = (attn @ v).transpose(1, 2).reshape(b, n, d)  # site attention ends
        return self.proj(out)


class ScaledQueryAttention(nn.Module):
    """The query scaled in place before the scores."""

    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q = self.to_q(x).reshape(b, n, self.heads, -1).transpose(1, 2)
        k, v = self.to_kv(x).reshape(b, n, 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        q.mul_(self.scale)
        if (
            _adopt is not None
            and _adopt.enabled('attention')
            and _adopt.attention_supported(q, k.transpose(-2, -1), v)
        ):
            _adopt_o = _adopt.attention(
                q, k, v, mask=None, scale=1.0, dropout_p=0.0, training=False
            )
            return self.proj((_adopt_o).transpose(1, 2).reshape(b, n, d))
        else:
            attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)  # site softmax: softmax over dim=-1 # site attention begins: query scaled in place (q.mul_) before q @ k^T, softmax, @ v
            return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))  # site attention ends


class SoftCappedAttention(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4, softcap: float = 30.0):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.softcap = softcap
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) * self.head_dim**-0.5  # site attention begins: tanh soft-capping through the soft_cap helper between the scores and the softmax: listed, not rewritten (the kernel does not take it)
        scores = soft_cap(scores, self.softcap)
        attn = F.softmax(scores, dim=-1)  # site softmax: softmax over dim=-1 of soft-capped scores
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)  # site attention ends
        return self.proj(out)
