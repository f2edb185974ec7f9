"""RMSNorms whose normalised value is cast to another dtype than the input's: the kernel casts it
back to the input's dtype, which differs wherever the weight (or the fixed dtype) is another."""
import torch
from torch import nn


class WeightDtypeRMSNorm(nn.Module):
    def __init__(self, dim=24, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, hidden_states):
        hidden_states = hidden_states.to(torch.float32)  # refuse: cast to self.weight.dtype at line 17, not back to the input's own dtype
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.eps)
        return self.weight * hidden_states.to(self.weight.dtype)


class Bf16OutRMSNorm(nn.Module):
    def __init__(self, dim=24, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        h = x.to(torch.float32)  # refuse: cast to torch.bfloat16 at line 29, not back to the input's own dtype
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(torch.bfloat16)


class HalfRMSNorm(nn.Module):
    def __init__(self, dim=24, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        h = x.float()  # refuse: cast to torch.float16 at line 41, not back to the input's own dtype
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.half()
