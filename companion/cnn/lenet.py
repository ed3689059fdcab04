"""LeNet-5 (LeCun et al., 1998): the convolutional network that read cheques, in two variants.

``"classic"`` keeps the paper's layer sizes, its average-pooling subsampling and its scaled tanh
``1.7159 tanh(2x/3)``, but simplifies two things: the subsampling layers have no trainable coefficient,
bias and squashing function, and the output is a plain linear layer trained with cross-entropy instead
of the paper's Euclidean radial-basis-function units. C3 is fully connected to S2 unless
``partial_c3=True``, which applies the paper's connection table (Table I) as a mask.

``"bn"`` is the modern reading: batch normalisation after every convolution and hidden linear layer,
ReLU, and max pooling.

Taught in: book/02_cnn/02_lenet.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = ("classic", "bn")

# Table I of LeCun et al. (1998): the S2 feature maps (0-5) each C3 feature map (0-15) reads.
C3_CONNECTIONS: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),  # contiguous triples
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),  # quadruples
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),  # non-contiguous quadruples
    (0, 1, 2, 3, 4, 5),  # all six
)


def c3_connection_mask() -> torch.Tensor:
    """The C3 connection table as a ``(16, 6, 1, 1)`` 0/1 mask over the convolution's weight."""
    mask = torch.zeros(16, 6, 1, 1)
    for out_map, in_maps in enumerate(C3_CONNECTIONS):
        mask[out_map, list(in_maps)] = 1.0
    return mask


class ScaledTanh(nn.Module):
    """The paper's squashing function ``f(a) = 1.7159 tanh(2a / 3)``, chosen so that ``f(+-1) = +-1``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


class PartiallyConnectedConv2d(nn.Conv2d):
    """A convolution whose output map ``o`` only reads the input maps where ``mask[o, i] = 1``.

    The full weight is stored (so the state dict looks like a ``Conv2d``'s), but masked entries are
    multiplied by zero in every forward pass, hence receive zero gradient and never change the output.

    Args:
        mask: ``(C_out, C_in, 1, 1)`` tensor of 0/1; the remaining arguments are ``nn.Conv2d``'s.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask: torch.Tensor,
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias=bias)
        if mask.shape != (out_channels, in_channels, 1, 1):
            raise ValueError(f"mask has shape {tuple(mask.shape)}; expected "
                             f"{(out_channels, in_channels, 1, 1)} (out_channels, in_channels, 1, 1).")
        self.register_buffer("mask", mask.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.mask  # (C_out, C_in, k, k) * (C_out, C_in, 1, 1)
        return F.conv2d(x, weight, self.bias)

    def effective_parameters(self) -> int:
        """Weights and biases that can actually change: the paper counts these (1,516 for C3)."""
        kernel = self.weight.shape[2] * self.weight.shape[3]
        bias = self.bias.numel() if self.bias is not None else 0
        return int(self.mask.sum().item()) * kernel + bias


def _activation(variant: str) -> nn.Module:
    return ScaledTanh() if variant == "classic" else nn.ReLU()


def _pool(variant: str) -> nn.Module:
    return nn.AvgPool2d(2) if variant == "classic" else nn.MaxPool2d(2)


class LeNet5(nn.Module):
    """LeNet-5 on ``32 x 32`` inputs: C1 6@5x5, S2, C3 16@5x5, S4, C5 120@5x5, F6 84, output.

    The layer names (``c1``, ``s2``, ...) follow the paper. C5 is a 5x5 convolution over the 5x5 maps
    of S4, so its output is 1x1: on 32x32 inputs it is exactly a fully connected layer, as the paper
    notes.

    Args:
        num_classes: number of output logits.
        variant: ``"classic"`` (scaled tanh, average pooling, biases) or ``"bn"`` (batch norm, ReLU,
            max pooling; convolutions and F6 have no bias, since batch norm's shift replaces it).
        in_channels: channels of the input image (1 for grey images).
        partial_c3: connect C3 to S2 through the paper's connection table (60 of the 96 map pairs);
            the default connects every C3 map to all six S2 maps.

    Raises:
        ValueError: an unknown ``variant``.
    """

    input_size = 32  # side of the square input the layer sizes were designed for

    def __init__(self, num_classes: int = 10, variant: str = "classic", in_channels: int = 1,
                 partial_c3: bool = False) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown LeNet-5 variant {variant!r}; valid variants are "
                             f"{', '.join(VARIANTS)}.")
        self.variant = variant
        self.in_channels = in_channels
        bias = variant == "classic"

        c3 = (PartiallyConnectedConv2d(6, 16, 5, c3_connection_mask(), bias=bias) if partial_c3
              else nn.Conv2d(6, 16, 5, bias=bias))
        # (name, layer, channels normalised by batch norm in the "bn" variant or 0 for none)
        feature_layers = [
            ("c1", nn.Conv2d(in_channels, 6, 5, bias=bias), 6),  # (B, 6, 28, 28)
            ("s2", _pool(variant), 0),  # (B, 6, 14, 14)
            ("c3", c3, 16),  # (B, 16, 10, 10)
            ("s4", _pool(variant), 0),  # (B, 16, 5, 5)
            ("c5", nn.Conv2d(16, 120, 5, bias=bias), 120),  # (B, 120, 1, 1)
        ]
        self.features = nn.Sequential()
        for name, layer, channels in feature_layers:
            self.features.add_module(name, layer)
            if channels:  # a convolution: (batch norm), then the activation
                if variant == "bn":
                    self.features.add_module(f"{name}_norm", nn.BatchNorm2d(channels))
                self.features.add_module(f"{name}_act", _activation(variant))
        self.classifier = nn.Sequential()
        self.classifier.add_module("f6", nn.Linear(120, 84, bias=bias))  # (B, 84)
        if variant == "bn":
            self.classifier.add_module("f6_norm", nn.BatchNorm1d(84))
        self.classifier.add_module("f6_act", _activation(variant))
        self.classifier.add_module("output", nn.Linear(84, num_classes))  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, 32, 32)`` images to ``(B, num_classes)`` logits."""
        side = self.input_size
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (side, side):
            raise ValueError(
                f"LeNet-5 expects inputs of shape (B, {self.in_channels}, 32, 32), got {tuple(x.shape)}; "
                "pad 28x28 images by 2 pixels on each side, e.g. F.pad(x, (2, 2, 2, 2))."
            )
        x = self.features(x)  # (B, 120, 1, 1)
        return self.classifier(torch.flatten(x, 1))  # (B, 120) -> (B, num_classes)


def lenet5(num_classes: int = 10, variant: str = "classic", in_channels: int = 1) -> LeNet5:
    """Builder registered as ``"lenet5"`` in :mod:`companion.models`.

    Args:
        num_classes: number of output logits.
        variant: ``"classic"`` or ``"bn"`` (see :class:`LeNet5`).
        in_channels: channels of the input image.

    Returns:
        A freshly initialised :class:`LeNet5`.
    """
    return LeNet5(num_classes=num_classes, variant=variant, in_channels=in_channels)
