"""Rule example: a causal LM head whose logits feed the training loss and are returned too.
The model reads continuous inputs so the numerical check can feed it; its labels are the
inputs' largest channel, with the positions whose first channel is large ignored."""
from typing import Optional

import torch
from torch import nn
from torch.nn import CrossEntropyLoss

try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise
    import adopt_kernels as _adopt
except ImportError:  # adopt
    _adopt = None


class TinyLM(nn.Module):
    def __init__(self, vocab_size=50, hidden_size=16):
        super().__init__()
        self.embed = nn.Linear(hidden_size, hidden_size)
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None):
        if labels is None:
            labels = x.argmax(-1).masked_fill(x[..., 0] > 1.0, -100)
        hidden_states = torch.tanh(self.embed(x))
        loss = None
        if (
            (labels is not None)
            and _adopt is not None
            and _adopt.enabled('linear_cross_entropy')
        ):
            shift_labels = labels[..., 1:].contiguous()
            loss_fct = CrossEntropyLoss()
            loss, logits = _adopt.linear_cross_entropy(
                hidden_states, self.lm_head, labels, shift=True, return_logits=True
            )
        else:
            logits = self.lm_head(hidden_states)
            if labels is not None:
                shift_logits = logits[..., :-1, :].contiguous()
                shift_labels = labels[..., 1:].contiguous()
                loss_fct = CrossEntropyLoss()
                loss = loss_fct(shift_logits.view(-1, shift_logits.size(-1)), shift_labels.view(-1))
        return loss, logits
