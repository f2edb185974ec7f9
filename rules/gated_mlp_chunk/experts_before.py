"""Rule example: mixture-of-experts weights stacked in one parameter, each expert's gate and
up rows applied by one F.linear and split."""
import torch
import torch.nn.functional as F
from torch import nn


class Experts(nn.Module):
    def __init__(self, hidden_size=16, intermediate_size=20, num_experts=3):
        super().__init__()
        self.num_experts = num_experts
        self.gate_up_proj = nn.Parameter(0.1 * torch.randn(num_experts, 2 * intermediate_size, hidden_size))
        self.down_proj = nn.Parameter(0.1 * torch.randn(num_experts, hidden_size, intermediate_size))
        self.act_fn = nn.SiLU()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(hidden_states)
        for expert_idx in range(self.num_experts):
            gate, up = F.linear(hidden_states, self.gate_up_proj[expert_idx]).chunk(2, dim=-1)
            current = self.act_fn(gate) * up
            out = out + F.linear(current, self.down_proj[expert_idx])
        return out
