import torch
from torch import nn


class Pooling(nn.Module):
    """Attention pooling over the sequence: the softmax runs over dim 1, not the last one."""

    def __init__(self, dim):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x):
        weights = torch.softmax(self.score(x), dim=1)  # refuse: not the last dimension
        return (weights * x).sum(dim=1)
