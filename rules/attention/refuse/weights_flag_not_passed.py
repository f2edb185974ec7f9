"""A caller that takes output_attentions itself and does not pass it on: the attention function
cannot tell when its weights are asked for."""
from typing import Optional

import torch
from torch import nn


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # refuse: takes output_attentions and does not pass it on
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1)
    attn_output = torch.matmul(attn_weights, value)
    return attn_output.transpose(1, 2), attn_weights


class Attention(nn.Module):
    def __init__(self, hidden_size=32, heads=4):
        super().__init__()
        self.head_dim = hidden_size // heads
        self.scaling = self.head_dim**-0.5
        self.qkv = nn.Linear(hidden_size, hidden_size * 3)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, output_attentions: bool = False, **kwargs):
        shape = (*x.shape[:-1], -1, self.head_dim)
        q, k, v = (t.view(shape).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        out, weights = eager_attention_forward(self, q, k, v, mask, self.scaling, **kwargs)
        return out.reshape(*x.shape[:-1], -1), weights
