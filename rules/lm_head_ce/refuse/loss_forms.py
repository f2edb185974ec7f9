"""Refuse cases: LM losses the fused kernel would compute differently. Each head is listed and
left as it is, with the reason."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class SoftCappedLM(nn.Module):
    def __init__(self, vocab_size=50, hidden_size=16, cap=30.0):
        super().__init__()
        self.cap = cap
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)

    def forward(self, hidden_states: torch.Tensor, labels: Optional[torch.Tensor] = None):
        logits = self.lm_head(hidden_states)  # refuse: scaling or soft-capping
        logits = torch.tanh(logits / self.cap) * self.cap
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[..., :-1, :].reshape(-1, logits.size(-1)), labels[..., 1:].reshape(-1))
        return loss, logits


class WeightedLM(nn.Module):
    def __init__(self, vocab_size=50, hidden_size=16):
        super().__init__()
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)
        self.register_buffer("class_weights", torch.ones(vocab_size))

    def forward(self, hidden_states: torch.Tensor, labels: Optional[torch.Tensor] = None):
        logits = self.lm_head(hidden_states)  # refuse: class weights
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1), weight=self.class_weights)
        return loss, logits


class SmoothedLM(nn.Module):
    def __init__(self, vocab_size=50, hidden_size=16):
        super().__init__()
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)
        self.loss_fct = nn.CrossEntropyLoss(label_smoothing=0.1)

    def forward(self, hidden_states: torch.Tensor, labels: Optional[torch.Tensor] = None):
        logits = self.lm_head(hidden_states)  # refuse: label smoothing
        loss = None
        if labels is not None:
            loss = self.loss_fct(logits.view(-1, logits.size(-1)), labels.view(-1))
        return loss, logits


class KeywordsLM(nn.Module):
    def __init__(self, vocab_size=50, hidden_size=16):
        super().__init__()
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)

    def forward(self, hidden_states: torch.Tensor, labels: Optional[torch.Tensor] = None, **loss_kwargs):
        logits = self.lm_head(hidden_states)  # refuse: through * or **
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1), **loss_kwargs)
        return loss, logits


class HalfShiftedLM(nn.Module):
    def __init__(self, vocab_size=50, hidden_size=16):
        super().__init__()
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)

    def forward(self, hidden_states: torch.Tensor, labels: Optional[torch.Tensor] = None):
        logits = self.lm_head(hidden_states)  # refuse: the logits are shifted by one position but the labels are not
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[..., :-1, :].reshape(-1, logits.size(-1)), labels.reshape(-1))
        return loss, logits


class ConditionallyCappedLM(nn.Module):
    """Soft-capping under a condition: the fast path would take the head's branch of the merge
    and skip the capping, so the site is refused."""

    def __init__(self, vocab_size=50, hidden_size=16, cap=30.0):
        super().__init__()
        self.cap = cap
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)

    def forward(self, hidden_states: torch.Tensor, labels: Optional[torch.Tensor] = None):
        logits = self.lm_head(hidden_states)  # refuse: on one path before the loss
        if self.cap is not None:
            logits = logits / self.cap
            logits = torch.tanh(logits)
            logits = logits * self.cap
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[..., :-1, :].reshape(-1, logits.size(-1)), labels[..., 1:].reshape(-1))
        return loss, logits
