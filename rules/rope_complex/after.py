"""Rule example: rotary embedding in complex form, one tensor at a time, the pairs formed with
view and flattened back with flatten(-2); queries and keys laid out (batch, seq, heads, dim)."""
import torch
from torch import nn

try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


def rotate(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    pairs = torch.view_as_complex(x.float().view(*x.shape[:-1], -1, 2))
    return (_adopt.apply_rope_interleaved(x.float(), None, freqs_cis[:, None, :].real, freqs_cis[:, None, :].imag, unsqueeze_dim=None) if _adopt is not None and _adopt.enabled('apply_rope_interleaved') and freqs_cis[:, None, :].is_complex() and x.dim() == 4 else torch.view_as_real(pairs * freqs_cis[:, None, :]).flatten(-2)).type_as(x)


class RotaryAttentionInput(nn.Module):
    def __init__(self, head_dim=16, max_seq_len=32, theta=10000.0):
        super().__init__()
        self.head_dim = head_dim
        self.max_seq_len = max_seq_len
        self.theta = theta
        self.wk = nn.Linear(head_dim, head_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # complex rotations are computed here, not kept as a buffer, so a dtype cast of the
        # module leaves them complex
        inv = 1.0 / (self.theta ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim))
        angles = torch.outer(torch.arange(x.shape[1], dtype=torch.float32), inv)
        freqs_cis = torch.polar(torch.ones_like(angles), angles)
        return rotate(x, freqs_cis) + rotate(self.wk(x), freqs_cis)
