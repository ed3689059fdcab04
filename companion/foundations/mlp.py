"""The multilayer perceptron: affine layers with non-linearities between them.

Taught in: book/01_foundations/02_mlp_fashion_mnist.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Flatten, then ``Linear -> ReLU (-> Dropout)`` per hidden layer, then a linear classifier.

    Args:
        in_features: length of the flattened input (784 for 28x28 images).
        hidden_sizes: width of each hidden layer.
        num_classes: number of output logits.
        dropout: dropout probability after each hidden activation (0 disables it).
    """

    def __init__(self, in_features: int = 784, hidden_sizes: Sequence[int] = (256,), num_classes: int = 10,
                 dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)
        self.in_features = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, ...)`` inputs with ``in_features`` values each to ``(B, num_classes)`` logits."""
        if x[0].numel() != self.in_features:
            raise ValueError(
                f"each input has {x[0].numel()} values (shape {tuple(x.shape[1:])}) but the MLP expects "
                f"in_features={self.in_features}; build it with in_features={x[0].numel()}"
            )
        return self.layers(x)


def mlp(in_features: int = 784, hidden_sizes: Sequence[int] = (256,), num_classes: int = 10,
        dropout: float = 0.0) -> MLP:
    """Builder registered as ``"mlp"`` in :mod:`companion.models`."""
    return MLP(in_features, hidden_sizes, num_classes, dropout)
