"""Rule case: einsum with spaced letters, an assert between the statements, nn.Softmax."""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import einsum, nn

try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


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
        ):
            out = _adopt.attention(
                q,
                k,
                v,
                mask=None,
                scale=self.scale,
                dropout_p=0.0,
                training=self.training,
            )
        else:
            dots = einsum('b i d, b j d -> b i j', q, k) * self.scale
            assert dots.shape[-1] == n
            attn = self.attend(dots)
            out = einsum('b i j, b j d -> b i d', attn, v)
        out = out.reshape(b, self.heads, n, -1).transpose(1, 2).reshape(b, n, d)
        return self.to_out(out)
