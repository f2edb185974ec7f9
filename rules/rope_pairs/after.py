"""Rule example: rotary embedding written on the even and odd channels, with per-pair tables."""
import torch
from torch import nn

try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x_even = x[..., 0::2]
    x_odd = x[..., 1::2]
    rotated = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)
    return (_adopt.apply_rope_interleaved(x, None, cos, sin, unsqueeze_dim=None) if _adopt is not None and _adopt.enabled('apply_rope_interleaved') else rotated.flatten(-2))


class PairRotary(nn.Module):
    def __init__(self, head_dim=16, base=10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.arange(x.shape[-2], dtype=self.inv_freq.dtype)
        angles = torch.outer(t, self.inv_freq)
        return rotate_pairs(x, angles.cos(), angles.sin())
