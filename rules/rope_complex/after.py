"""Rule example: rotary embedding in complex form, applied to queries and keys laid out
(batch, seq, heads, head_dim) with freqs_cis built by torch.polar."""
import torch
from torch import nn

try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


def precompute_freqs_cis(dim: int, end: int, theta: float = 10000.0) -> torch.Tensor:
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: (dim // 2)].float() / dim))
    t = torch.arange(end, dtype=torch.float32)
    freqs = torch.outer(t, freqs)
    return torch.polar(torch.ones_like(freqs), freqs)


def reshape_for_broadcast(freqs_cis: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    shape = [d if i == 1 or i == x.ndim - 1 else 1 for i, d in enumerate(x.shape)]
    return freqs_cis.view(*shape)


def apply_rotary_emb(xq, xk, freqs_cis):
    xq_ = torch.view_as_complex(xq.float().reshape(*xq.shape[:-1], -1, 2))
    xk_ = torch.view_as_complex(xk.float().reshape(*xk.shape[:-1], -1, 2))
    freqs_cis = reshape_for_broadcast(freqs_cis, xq_)
    xq_out = (_adopt.apply_rope_interleaved(xq.float(), None, freqs_cis.real, freqs_cis.imag, unsqueeze_dim=None) if _adopt is not None and _adopt.enabled('apply_rope_interleaved') and freqs_cis.is_complex() and xq.dim() == 4 else torch.view_as_real(xq_ * freqs_cis).flatten(3))
    xk_out = (_adopt.apply_rope_interleaved(xk.float(), None, freqs_cis.real, freqs_cis.imag, unsqueeze_dim=None) if _adopt is not None and _adopt.enabled('apply_rope_interleaved') and freqs_cis.is_complex() and xk.dim() == 4 else torch.view_as_real(xk_ * freqs_cis).flatten(3))
    return xq_out.type_as(xq), xk_out.type_as(xk)


class RotaryAttentionInput(nn.Module):
    def __init__(self, head_dim=16, max_seq_len=32):
        super().__init__()
        self.head_dim = head_dim
        self.max_seq_len = max_seq_len
        self.wk = nn.Linear(head_dim, head_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # complex tables are computed here, not kept as a buffer, so a dtype cast of the module
        # leaves them complex
        freqs_cis = precompute_freqs_cis(self.head_dim, self.max_seq_len)[: x.shape[1]]
        q, k = apply_rotary_emb(x, self.wk(x), freqs_cis)
        return q + k
