"""Language-model heads with their loss, in the forms the lm_head_ce rewrite takes: the logits
cast to float32 before a shifted loss (LLaMA, Mistral), labels moved to the logits' device first
(GPT-2), an unshifted masked-LM loss with its own ignore index and reduction (BERT's MLM head).
Each reads continuous inputs, so `adopt verify --shape` can feed it; the labels are derived from
the inputs, with some positions ignored, and every forward returns the logits with the loss."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import CrossEntropyLoss

try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


def targets(x: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    return x.argmax(-1).masked_fill(x[..., 0] > 1.0, ignore_index)


class FloatLogitsLM(nn.Module):
    def __init__(self, vocab_size=40, hidden_size=16):
        super().__init__()
        self.vocab_size = vocab_size
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None):
        labels = targets(x) if labels is None else labels
        hidden_states = torch.tanh(self.proj(x))
        loss = None
        if (
            (labels is not None)
            and _adopt is not None
            and _adopt.enabled('linear_cross_entropy')
        ):
            shift_labels = labels[..., 1:].contiguous()
            loss_fct = CrossEntropyLoss()
            shift_labels = shift_labels.view(-1)
            shift_labels = shift_labels.to(hidden_states.device)
            loss, logits = _adopt.linear_cross_entropy(
                hidden_states,
                self.lm_head,
                labels,
                shift=True,
                return_logits=True,
                logits_dtype=torch.float32,
            )
        else:
            logits = self.lm_head(hidden_states)  # site lm_head_ce begins: logits cast to float32, shifted, CrossEntropyLoss
            logits = logits.float()
            if labels is not None:
                shift_logits = logits[..., :-1, :].contiguous()
                shift_labels = labels[..., 1:].contiguous()
                loss_fct = CrossEntropyLoss()
                shift_logits = shift_logits.view(-1, self.vocab_size)
                shift_labels = shift_labels.view(-1)
                shift_labels = shift_labels.to(shift_logits.device)
                loss = loss_fct(shift_logits, shift_labels)  # site lm_head_ce ends
        return loss, logits


class DeviceMoveLM(nn.Module):
    def __init__(self, vocab_size=40, hidden_size=16):
        super().__init__()
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.lm_head = nn.Linear(hidden_size, vocab_size)

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None):
        labels = targets(x) if labels is None else labels
        hidden_states = torch.tanh(self.proj(x))
        loss = None
        if (
            (labels is not None)
            and _adopt is not None
            and _adopt.enabled('linear_cross_entropy')
        ):
            labels = labels.to(hidden_states.device)
            shift_labels = labels[..., 1:].contiguous()
            loss_fct = CrossEntropyLoss()
            loss, lm_logits = _adopt.linear_cross_entropy(
                hidden_states, self.lm_head, labels, shift=True, return_logits=True
            )
        else:
            lm_logits = self.lm_head(hidden_states)  # site lm_head_ce begins: labels moved to the logits' device, shifted, CrossEntropyLoss
            if labels is not None:
                labels = labels.to(lm_logits.device)
                shift_logits = lm_logits[..., :-1, :].contiguous()
                shift_labels = labels[..., 1:].contiguous()
                loss_fct = CrossEntropyLoss()
                loss = loss_fct(shift_logits.view(-1, shift_logits.size(-1)), shift_labels.view(-1))  # site lm_head_ce ends
        return loss, lm_logits


class MaskedLMHead(nn.Module):
    def __init__(self, vocab_size=40, hidden_size=16):
        super().__init__()
        self.config_vocab_size = vocab_size
        self.transform = nn.Linear(hidden_size, hidden_size)
        self.decoder = nn.Linear(hidden_size, vocab_size)

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None):
        labels = targets(x, ignore_index=3) if labels is None else labels
        masked_lm_loss = None
        if (
            (labels is not None)
            and _adopt is not None
            and _adopt.enabled('linear_cross_entropy')
        ):
            masked_lm_loss, prediction_scores = _adopt.linear_cross_entropy(
                torch.tanh(self.transform(x)),
                self.decoder,
                labels,
                ignore_index=3,
                shift=False,
                reduction="sum",
                return_logits=True,
            )
        else:
            prediction_scores = self.decoder(torch.tanh(self.transform(x)))  # site lm_head_ce begins: unshifted masked-LM loss, own ignore_index, summed
            if labels is not None:
                masked_lm_loss = F.cross_entropy(prediction_scores.view(-1, self.config_vocab_size), labels.view(-1), ignore_index=3, reduction="sum")  # site lm_head_ce ends
        return masked_lm_loss, prediction_scores
