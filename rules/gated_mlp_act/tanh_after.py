"""Rule example: T5's gated-GELU block written with F.gelu and the tanh approximation, dropout
before the output projection. The activation handed to the kernel must keep the keyword."""
import torch
import torch.nn.functional as F
from torch import nn

import functools  # adopt
try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


class TanhGatedActDense(nn.Module):
    def __init__(self, d_model=16, d_ff=40, dropout=0.0):
        super().__init__()
        self.wi_0 = nn.Linear(d_model, d_ff, bias=False)
        self.wi_1 = nn.Linear(d_model, d_ff, bias=False)
        self.wo = nn.Linear(d_ff, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states):
        if _adopt is not None and _adopt.enabled('gated_mlp'):
            hidden_states = _adopt.gated_act(
                self.wi_0(hidden_states),
                self.wi_1(hidden_states),
                functools.partial(torch.nn.functional.gelu, approximate="tanh"),
            )
        else:
            hidden_gelu = F.gelu(self.wi_0(hidden_states), approximate="tanh")
            hidden_linear = self.wi_1(hidden_states)
            hidden_states = hidden_gelu * hidden_linear
        hidden_states = self.dropout(hidden_states)
        return self.wo(hidden_states)
