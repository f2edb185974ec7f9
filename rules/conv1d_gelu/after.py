"""Rule example: an MLP built from GPT-2 style Conv1D layers (weight stored as (in, out))."""
import torch
from torch import nn

try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


class Conv1D(nn.Module):
    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class Conv1DMlp(nn.Module):
    def __init__(self, width=32, dim=16):
        super().__init__()
        self.c_fc = Conv1D(width, dim)
        self.c_proj = Conv1D(dim, width)
        self.act = nn.GELU(approximate="tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            _adopt is not None
            and _adopt.enabled('linear_gelu')
            and _adopt.gelu_kind(self.act) is not None
        ):
            _adopt_a = _adopt.linear_gelu(x, self.c_fc, _adopt.gelu_kind(self.act))
            return self.c_proj(_adopt_a)
        else:
            return self.c_proj(self.act(self.c_fc(x)))
