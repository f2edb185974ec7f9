"""Rule example: Gemma-style RMSNorm, the (1 + weight) scaling done in float32 before the cast."""
import torch
from torch import nn

try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


class OffsetRMSNorm(nn.Module):
    def __init__(self, dim=24, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(0.1 * torch.randn(dim))

    def _norm(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x):
        if _adopt is not None and _adopt.enabled('rms_norm'):
            output = _adopt.rms_norm(
                x,
                1.0 + self.weight.float(),
                self.eps,
                cast_to_fp32=True,
                keep_fp32=True,
            )
        else:
            output = self._norm(x.float())
            output = output * (1.0 + self.weight.float())
        return output.type_as(x)
