"""Refuse case: an LM head whose loss goes through a helper the base class provides:
the helper decides the shift, reduction and ignore index at run time, so the site is listed and left as it is."""
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


class TinyCausalLM(TinyBase):
    def __init__(self, vocab_size=50, hidden_size=16):
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, hidden_size)
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)

    def forward(self, input_ids: torch.Tensor, labels: Optional[torch.Tensor] = None, **kwargs):
        logits = self.lm_head(self.embed(input_ids))
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.vocab_size, **kwargs)  # refuse: the loss goes through self.loss_function
        return loss, logits
