"""Decoder whose attention math lives in a module-level function, picked from a table of
implementations by name, in the style of current Hugging Face model files."""

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


@dataclass
class FnDecoderConfig:
    hidden_size: int = 32
    num_attention_heads: int = 4
    num_hidden_layers: int = 2
    attention_dropout: float = 0.0
    attn_implementation: str = "eager"
    output_attentions: bool = False


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    scaling: Optional[float] = None,
    dropout: float = 0.0,
    **kwargs,
):
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    if (
        not (kwargs.get("output_attentions") or getattr(getattr(module, "config", None), "output_attentions", False))
        and _adopt is not None
        and _adopt.enabled('attention')
        and _adopt.attention_supported(query, key.transpose(2, 3), value)
    ):
        attn_output = _adopt.attention(
            query,
            key,
            value,
            mask=attention_mask,
            scale=scaling,
            dropout_p=dropout,
            training=module.training,
            mask_added=True,
            softmax_dtype=torch.float32,
        )
        attn_weights = None  # adopt: read only when a caller asks for attentions
    else:
        attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # site attention begins: module-level attention function returning (output, weights), scale defaulted under 'if scaling is None', dispatched through a table of implementations
        if attention_mask is not None:
            attn_weights = attn_weights + attention_mask
        attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)  # site softmax: softmax over dim=-1 in float32, cast back
        attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
        attn_output = torch.matmul(attn_weights, value)  # site attention ends
    attn_output = attn_output.transpose(1, 2).contiguous()
    return attn_output, attn_weights


ATTENTION_FUNCTIONS = {"eager": eager_attention_forward}


class FnAttention(nn.Module):
    def __init__(self, config: FnDecoderConfig):
        super().__init__()
        self.config = config
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, **kwargs):
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)  # site qkv_fusion begins: q/k/v projections of hidden_states
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)  # site qkv_fusion ends
        attention_interface: Callable = ATTENTION_FUNCTIONS.get(self.config.attn_implementation, eager_attention_forward)
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = attn_output.reshape(*hidden_states.shape[:-1], -1)
        return self.o_proj(attn_output), attn_weights


class FnDecoderLayer(nn.Module):
    def __init__(self, config: FnDecoderConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.hidden_size)
        self.self_attn = FnAttention(config)
        self.mlp = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states, attention_mask=None, **kwargs):
        attn_out, attn_weights = self.self_attn(self.norm(hidden_states), attention_mask, **kwargs)
        hidden_states = hidden_states + attn_out
        return hidden_states + self.mlp(hidden_states), attn_weights


class FnDecoder(nn.Module):
    def __init__(self, config: FnDecoderConfig):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList([FnDecoderLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, hidden_states: torch.Tensor, output_attentions: Optional[bool] = None):
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        all_attentions = ()
        for layer in self.layers:
            hidden_states, weights = layer(hidden_states, output_attentions=output_attentions)
            if output_attentions:
                all_attentions = all_attentions + (weights,)
        return hidden_states, all_attentions
