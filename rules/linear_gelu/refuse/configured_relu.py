"""Refuse case: the activation is looked up from the configuration, whose default is relu."""
from dataclasses import dataclass

from torch import nn

ACT2FN = {"gelu": nn.GELU(), "relu": nn.ReLU()}


@dataclass
class FeedForwardConfig:
    hidden_size: int = 32
    ffn_dim: int = 64
    activation_function: str = "relu"


class FeedForward(nn.Module):
    def __init__(self, config: FeedForwardConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.ffn_dim)
        self.activation_fn = ACT2FN[config.activation_function]
        self.fc2 = nn.Linear(config.ffn_dim, config.hidden_size)

    def forward(self, x):
        x = self.fc1(x)  # refuse: "relu" by default
        x = self.activation_fn(x)
        return self.fc2(x)
