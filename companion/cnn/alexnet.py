"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) in two layouts, weight-compatible with torchvision.

``layout="2014"`` (the default) is the single-GPU network of Krizhevsky's "One weird trick" report
(2014), which is what ``torchvision.models.alexnet`` implements: five convolutions with 64, 192, 384,
256 and 256 filters, no local response normalisation, 61,100,840 parameters. Its state dict loads
into ``torchvision.models.alexnet()`` with strict keys and gives the same logits.

``layout="2012"`` is the network of the 2012 paper: 96, 256, 384, 384 and 256 filters, local response
normalisation after the first two convolutions (after their ReLU, before pooling), and the two-GPU
connectivity: conv2, conv4 and conv5 only read the feature maps of their own GPU, which is a grouped
convolution with ``groups=2``. It has 60,965,224 parameters, the paper's "60 million".

Both use overlapping 3x3 max pooling with stride 2 and dropout 0.5 before the first two fully
connected layers. Three initialisations are offered (``init=``): ``"kaiming"`` (default: He et al.'s
normal initialisation, fan-out for the convolutions and fan-in for the linear layers, zero biases), ``"pytorch"`` (PyTorch's layer defaults, which torchvision's
AlexNet keeps; too small for a deep ReLU stack to start learning quickly) and ``"paper"`` (every
weight from N(0, 0.01); biases 1 in conv2, conv4, conv5, FC6 and FC7, 0 elsewhere).

Taught in: book/02_cnn/03_alexnet.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from companion.cnn.lrn import LocalResponseNorm

LAYOUTS = ("2014", "2012")
WIDTHS_2014 = (64, 192, 384, 256, 256)  # "One weird trick" / torchvision
WIDTHS_2012 = (96, 256, 384, 384, 256)  # the 2012 paper
MINI_WIDTHS = (8, 24, 48, 32, 32)  # an eighth of the 2014 widths, for the quick profile
TWO_GPU_GROUPS = (1, 2, 1, 2, 2)  # conv3 (and the FC layers) read both GPUs' maps; the others do not
INITS = ("kaiming", "pytorch", "paper")


class AlexNet(nn.Module):
    """Five convolutions, three overlapping max-pools and three fully connected layers.

    ImageNet configuration (``small_input=False``), for ``(B, C, 224, 224)`` inputs:
    conv1 11x11/4 pad 2 -> 55x55, pool 3x3/2 -> 27, conv2 5x5 pad 2, pool -> 13, conv3-5 3x3 pad 1,
    pool -> 6; an adaptive average pool to 6x6 (a no-op at 224); FC 256*36 -> 4096 -> 4096 -> classes.

    ``small_input=True`` (28x28 or 32x32 inputs) changes exactly two things: conv1 becomes 3x3 with
    stride 1 and padding 1, and the last max-pool is removed. The maps then go 28 -> 28 -> 13 -> 13
    -> 6 -> 6 (32 -> 32 -> 15 -> 15 -> 7 -> 7, averaged to 6x6), so the classifier still reads a 6x6
    grid and keeps its ImageNet shape.

    Args:
        widths: filters of conv1 .. conv5.
        hidden_features: width of the two hidden fully connected layers.
        num_classes: number of output logits.
        in_channels: channels of the input image.
        small_input: use the stem for 28x28 / 32x32 inputs described above.
        local_response_norm: add the paper's LRN (n=5, alpha=1e-4, beta=0.75, k=2) after the ReLU of
            conv1 and conv2.
        groups: convolution groups of conv1 .. conv5 (``TWO_GPU_GROUPS`` is the 2012 split).
        dropout: dropout probability before FC6 and FC7.
        activation: the non-linearity after every convolution and hidden layer (the paper's point is
            ``nn.ReLU``; ``nn.Tanh`` gives the saturating network it compares against).
        init: ``"kaiming"``, ``"pytorch"`` or ``"paper"`` (see the module docstring). The Kaiming gain
            follows ``activation`` (``tanh`` for ``nn.Tanh``, ``relu`` otherwise).

    Raises:
        ValueError: five widths and five groups are needed, and each group count must divide the
            widths it connects.
    """

    def __init__(self, *, widths: Sequence[int] = WIDTHS_2014, hidden_features: int = 4096,
                 num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 local_response_norm: bool = False, groups: Sequence[int] = (1, 1, 1, 1, 1),
                 dropout: float = 0.5, activation: type[nn.Module] = nn.ReLU,
                 init: str = "kaiming") -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; valid ones are {', '.join(INITS)}.")
        if len(widths) != 5 or len(groups) != 5:
            raise ValueError(f"AlexNet has five convolutions: got {len(widths)} widths and {len(groups)} "
                             "groups; pass five of each, e.g. widths=(64, 192, 384, 256, 256).")
        channels = [in_channels, *widths]
        for index, group in enumerate(groups):
            if channels[index] % group or channels[index + 1] % group:
                raise ValueError(f"conv{index + 1} has {channels[index]} input and {channels[index + 1]} "
                                 f"output channels, not divisible by groups={group}; choose widths that "
                                 "are multiples of the group count.")
        self.in_channels = in_channels
        self.small_input = small_input
        self.min_size = 7 if small_input else 63  # smaller inputs leave no map for the last pool

        def conv(index: int, kernel: int, stride: int = 1, padding: int = 1) -> nn.Conv2d:
            return nn.Conv2d(channels[index], channels[index + 1], kernel, stride=stride,
                             padding=padding, groups=groups[index])

        stem = conv(0, 3, 1, 1) if small_input else conv(0, 11, 4, 2)
        layers: list[nn.Module] = [stem, activation()]  # (B, w1, 55, 55) | (B, w1, 28, 28)
        if local_response_norm:
            layers.append(LocalResponseNorm())
        layers += [nn.MaxPool2d(3, stride=2),  # overlapping pooling: (B, w1, 27, 27) | 13x13
                   conv(1, 5, padding=2), activation()]  # (B, w2, 27, 27) | 13x13
        if local_response_norm:
            layers.append(LocalResponseNorm())
        layers += [nn.MaxPool2d(3, stride=2),  # (B, w2, 13, 13) | 6x6
                   conv(2, 3), activation(),  # (B, w3, 13, 13) | 6x6
                   conv(3, 3), activation(),  # (B, w4, 13, 13) | 6x6
                   conv(4, 3), activation()]  # (B, w5, 13, 13) | 6x6
        if not small_input:
            layers.append(nn.MaxPool2d(3, stride=2))  # (B, w5, 6, 6)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))  # (B, w5, 6, 6) whatever the input size
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(widths[4] * 6 * 6, hidden_features),  # FC6
            activation(),
            nn.Dropout(dropout),
            nn.Linear(hidden_features, hidden_features),  # FC7
            activation(),
            nn.Linear(hidden_features, num_classes),  # FC8
        )
        self._initialise(init, "tanh" if activation is nn.Tanh else "relu")

    def _initialise(self, init: str, nonlinearity: str) -> None:
        if init == "pytorch":
            return  # keep each layer's reset_parameters()
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        linears = [m for m in self.classifier if isinstance(m, nn.Linear)]
        for layer in convs + linears:
            if init == "kaiming":  # keeps the signal's scale through the stack (fan-out for convs)
                mode = "fan_out" if isinstance(layer, nn.Conv2d) else "fan_in"
                nn.init.kaiming_normal_(layer.weight, mode=mode, nonlinearity=nonlinearity)
            else:
                nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.zeros_(layer.bias)
        if init == "paper":  # positive inputs for the ReLUs early in training
            for layer in [convs[1], convs[3], convs[4], linears[0], linears[1]]:
                nn.init.ones_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(B, in_channels, H, W)`` to logits ``(B, num_classes)``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"AlexNet expects images (B, {self.in_channels}, H, W), got shape "
                             f"{tuple(x.shape)}; build it with in_channels={x.shape[1] if x.dim() == 4 else '?'} "
                             "or convert the images.")
        if min(x.shape[-2:]) < self.min_size:
            hint = ("use small_input=True for 28x28 / 32x32 images" if not self.small_input
                    else "pad or resize the images")
            raise ValueError(f"AlexNet{' (small_input)' if self.small_input else ''} needs inputs of at "
                             f"least {self.min_size}x{self.min_size}, got {tuple(x.shape[-2:])}; {hint}.")
        x = self.features(x)  # (B, w5, h, w)
        x = self.avgpool(x)  # (B, w5, 6, 6)
        return self.classifier(torch.flatten(x, 1))  # (B, w5 * 36) -> (B, num_classes)


def alexnet(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
            layout: str = "2014") -> AlexNet:
    """AlexNet; the defaults equal ``torchvision.models.alexnet()`` (strict state-dict load).

    Args:
        num_classes: number of output logits.
        in_channels: channels of the input image.
        small_input: stem for 28x28 / 32x32 inputs (see :class:`AlexNet`).
        layout: ``"2014"``, the single-GPU "One weird trick" network torchvision implements, or
            ``"2012"``, the NeurIPS 2012 paper's (96-256-384-384-256 filters, LRN, two-GPU groups).

    Returns:
        A freshly initialised :class:`AlexNet`.

    Raises:
        ValueError: an unknown ``layout``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown AlexNet layout {layout!r}; valid layouts are {', '.join(LAYOUTS)}.")
    if layout == "2012":
        return AlexNet(widths=WIDTHS_2012, num_classes=num_classes, in_channels=in_channels,
                       small_input=small_input, local_response_norm=True, groups=TWO_GPU_GROUPS)
    return AlexNet(widths=WIDTHS_2014, num_classes=num_classes, in_channels=in_channels,
                   small_input=small_input)


def alexnet_mini(*, num_classes: int = 10, in_channels: int = 1, **overrides) -> AlexNet:
    """The narrow AlexNet the quick profile trains on Fashion-MNIST (28x28 or 32x32 inputs).

    The 2014 layout with the small-input stem, an eighth of the filters (8, 24, 48, 32, 32) and
    256-unit hidden layers instead of 4096. Keyword arguments of :class:`AlexNet` (e.g.
    ``activation=nn.Tanh``) can be passed through ``overrides``.
    """
    return AlexNet(widths=MINI_WIDTHS, hidden_features=256, num_classes=num_classes,
                   in_channels=in_channels, small_input=True, **overrides)
