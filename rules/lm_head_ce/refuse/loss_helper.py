"""Refuse cases: an LM head whose loss goes through a helper the base class provides
(`self.loss_function`, as current transformers models call it), with the logits changed before
the helper: scaled (Cohere, Granite) or soft-capped under a condition (Gemma 2). The kernel takes
the head's logits as they are, so each site is listed and left as it is."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def shifted_cross_entropy(logits, labels, vocab_size, **kwargs):
    return F.cross_entropy(logits[:, :-1].reshape(-1, vocab_size), labels[:, 1:].reshape(-1))


class TinyBase(nn.Module):
    @property
    def loss_function(self):
        return shifted_cross_entropy


class TinyLM(TinyBase):
    def __init__(self, vocab_size=50, hidden_size=16, logit_scale=0.0625, final_logit_softcapping=30.0):
        super().__init__()
        self.vocab_size = vocab_size
        self.logit_scale = logit_scale
        self.final_logit_softcapping = final_logit_softcapping
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)


class ScaledLogitsLM(TinyLM):
    def forward(self, hidden_states: torch.Tensor, labels: Optional[torch.Tensor] = None, **kwargs):
        logits = self.lm_head(hidden_states)  # refuse: the logits are changed by 'mul'
        logits = logits * self.logit_scale
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.vocab_size, **kwargs)
        return loss, logits


class SoftCappedHelperLM(TinyLM):
    def forward(self, hidden_states: torch.Tensor, labels: Optional[torch.Tensor] = None, **kwargs):
        logits = self.lm_head(hidden_states)  # refuse: on one path before the loss
        cap = self.final_logit_softcapping
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return (self.loss_function(logits, labels, self.vocab_size, **kwargs) if labels is not None else None), logits
