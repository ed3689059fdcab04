"""GoogLeNet / Inception v1 (Szegedy et al., 2015) and a narrow Inception network for quick runs.

An Inception module runs four branches side by side on the same input and concatenates their
outputs along the channels: a 1x1 convolution, a 1x1 "reduce" then 3x3 convolution, a 1x1 reduce
then "5x5" convolution, and a 3x3 max-pool followed by a 1x1 "pool projection". The 1x1 reductions
(bottlenecks) keep the expensive 3x3 and 5x5 convolutions cheap.

:class:`GoogLeNet` at its defaults has torchvision's module tree and parameter names, so
``model.load_state_dict(torchvision.models.googlenet(weights=None).state_dict())`` works with strict
keys and both give the same logits. torchvision departs from the 2015 paper in two ways, and so do
the defaults here:

- every convolution is followed by batch normalisation (Ioffe & Szegedy, 2015) and has no bias; the
  paper had biases, no batch normalisation, and local response normalisation in the stem;
- the "5x5" branch uses a 3x3 convolution (a slip in the original port, kept for weight
  compatibility). ``five_by_five_kernel=5`` restores the paper's 5x5 kernel.

Taught in: book/02_cnn/05_inception.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

# Table 1 of Szegedy et al. (2015): (name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
GOOGLENET_MODULES: tuple[tuple[str, int, int, int, int, int, int], ...] = (
    ("inception3a", 64, 96, 128, 16, 32, 32),
    ("inception3b", 128, 128, 192, 32, 96, 64),
    ("inception4a", 192, 96, 208, 16, 48, 64),
    ("inception4b", 160, 112, 224, 24, 64, 64),
    ("inception4c", 128, 128, 256, 24, 64, 64),
    ("inception4d", 112, 144, 288, 32, 64, 64),
    ("inception4e", 256, 160, 320, 32, 128, 128),
    ("inception5a", 256, 160, 320, 32, 128, 128),
    ("inception5b", 384, 192, 384, 48, 128, 128),
)

# ImageNet normalisation constants torchvision's pretrained weights were trained with.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def transform_imagenet_input(x: torch.Tensor) -> torch.Tensor:
    """Re-normalise ``(B, 3, H, W)`` images from ImageNet mean/std scaling to the ``[-1, 1]`` scaling.

    Weights ported from TensorFlow expect pixels scaled as ``(p - 0.5) / 0.5``; torchvision's data
    pipelines give ``(p - mean) / std``. Undo one, apply the other, channel by channel.
    """
    mean = torch.tensor(_IMAGENET_MEAN, device=x.device, dtype=x.dtype).reshape(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD, device=x.device, dtype=x.dtype).reshape(1, 3, 1, 1)
    return (x * std + mean - 0.5) / 0.5  # (B, 3, H, W)


class BasicConv2d(nn.Sequential):
    """Convolution without bias, batch normalisation (eps 0.001), ReLU: ``conv``, ``bn`` inside."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)
        self.relu = nn.ReLU(inplace=True)


class Inception(nn.Module):
    """The Inception module: four parallel branches concatenated along the channels.

    Every branch keeps the spatial size, so ``(B, in_channels, H, W)`` becomes
    ``(B, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)``.

    Args:
        in_channels: channels of the input.
        ch1x1: filters of the 1x1 branch.
        ch3x3red, ch3x3: 1x1 reduction, then 3x3 filters.
        ch5x5red, ch5x5: 1x1 reduction, then "5x5" filters.
        pool_proj: 1x1 filters after the 3x3/stride-1 max-pool.
        five_by_five_kernel: kernel of the "5x5" branch: 3 as in torchvision, 5 as in the paper.
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, five_by_five_kernel: int = 3) -> None:
        super().__init__()
        if five_by_five_kernel not in (3, 5):
            raise ValueError(f"five_by_five_kernel must be 3 (torchvision) or 5 (the paper), "
                             f"got {five_by_five_kernel}.")
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            BasicConv2d(ch5x5red, ch5x5, kernel_size=five_by_five_kernel,
                        padding=five_by_five_kernel // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, dim=1)  # (B, out_channels, H, W)


class InceptionAux(nn.Module):
    """Auxiliary classifier: 4x4 average pool, 1x1 conv (128), FC 1024, dropout, FC to the classes."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the paper pools 14x14 maps with a 5x5/stride-3 window to 4x4; adaptive pooling gives 4x4
        # for any input size
        x = nn.functional.adaptive_avg_pool2d(x, (4, 4))  # (B, C, 4, 4)
        x = torch.flatten(self.conv(x), 1)  # (B, 128 * 16)
        x = self.dropout(torch.relu(self.fc1(x)))  # (B, 1024)
        return self.fc2(x)  # (B, num_classes)


class GoogLeNetOutputs(NamedTuple):
    """What a GoogLeNet with auxiliary classifiers returns in training mode."""

    logits: torch.Tensor  # (B, num_classes), main head
    aux_logits2: torch.Tensor  # (B, num_classes), head after inception4d
    aux_logits1: torch.Tensor  # (B, num_classes), head after inception4a


def _init_weights(model: nn.Module) -> None:
    """torchvision's scheme: truncated normal (std 0.01, cut at +-2) weights, BN scale 1, shift 0."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, mean=0.0, std=0.01, a=-2, b=2)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class GoogLeNet(nn.Module):
    """GoogLeNet: a stem, nine Inception modules in three stages, global average pool, one linear layer.

    ImageNet configuration (224x224): 7x7/2 conv, 3x3/2 max-pool, 1x1 conv, 3x3 conv, 3x3/2 max-pool
    (56 -> 28), modules 3a-3b at 28x28, max-pool, 4a-4e at 14x14, max-pool, 5a-5b at 7x7.
    ``small_input=True`` (28x28 or 32x32 images) makes ``conv1`` a 3x3/stride-1 convolution and drops
    ``maxpool1``, so the stages run at 14, 7 and 4 (28x28 inputs) or 16, 8 and 4 (32x32); nothing else
    changes.

    Args:
        num_classes: outputs of the main (and auxiliary) classifiers.
        in_channels: channels of the input image.
        aux_logits: add the two auxiliary classifiers (after 4a and 4d); used in training mode only.
        transform_input: re-scale ImageNet-normalised inputs for TensorFlow-ported weights (3 channels).
        small_input: the stem for 28x28/32x32 inputs described above.
        width: multiplies every channel count (stem and modules) for narrow models; 1.0 is GoogLeNet.
        five_by_five_kernel: 3 (torchvision) or 5 (the paper) in the modules' "5x5" branch.
        dropout: before the final linear layer (torchvision uses 0.2, the paper 0.4).
        dropout_aux: inside the auxiliary classifiers (0.7 as in the paper).
    """

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = True,
                 transform_input: bool = False, small_input: bool = False, width: float = 1.0,
                 five_by_five_kernel: int = 3, dropout: float = 0.2,
                 dropout_aux: float = 0.7) -> None:
        super().__init__()
        if transform_input and in_channels != 3:
            raise ValueError(f"transform_input=True re-normalises RGB images, but in_channels="
                             f"{in_channels}; use transform_input=False for other inputs.")

        def scaled(channels: int) -> int:
            return max(1, round(channels * width))

        self.in_channels = in_channels
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.small_input = small_input
        if small_input:
            self.conv1 = BasicConv2d(in_channels, scaled(64), kernel_size=3, padding=1)
            self.maxpool1 = nn.Identity()
        else:
            self.conv1 = BasicConv2d(in_channels, scaled(64), kernel_size=7, stride=2, padding=3)
            self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(scaled(64), scaled(64), kernel_size=1)
        self.conv3 = BasicConv2d(scaled(64), scaled(192), kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        channels = scaled(192)
        module_out: dict[str, int] = {}
        for name, *widths in GOOGLENET_MODULES:
            module = Inception(channels, *[scaled(w) for w in widths],
                               five_by_five_kernel=five_by_five_kernel)
            setattr(self, name, module)
            channels = module_out[name] = module.out_channels
            if name == "inception3b":
                self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "inception4e":
                self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)

        if aux_logits:
            self.aux1 = InceptionAux(module_out["inception4a"], num_classes, dropout=dropout_aux)
            self.aux2 = InceptionAux(module_out["inception4d"], num_classes, dropout=dropout_aux)
        else:
            self.aux1 = self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        """Map ``(B, in_channels, H, W)`` images to ``(B, num_classes)`` logits.

        In training mode with ``aux_logits`` it returns :class:`GoogLeNetOutputs` (main, aux2, aux1).
        """
        min_side = 8 if self.small_input else 32
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"GoogLeNet expects (B, {self.in_channels}, H, W) inputs, got "
                             f"{tuple(x.shape)}; build it with in_channels={x.shape[-3]} or convert "
                             "the images.")
        if min(x.shape[-2:]) < min_side:
            hint = ("resize the images" if self.small_input
                    else "resize the images or build the model with small_input=True")
            raise ValueError(f"GoogLeNet{' (small_input)' if self.small_input else ''} needs inputs "
                             f"of at least {min_side}x{min_side}, got {tuple(x.shape[-2:])}; {hint}.")
        if self.transform_input:
            x = transform_imagenet_input(x)
        x = self.maxpool1(self.conv1(x))  # (B, 64, H/4, W/4); small_input: (B, 64, H, W)
        x = self.maxpool2(self.conv3(self.conv2(x)))  # (B, 192, H/8, W/8); small: H/2
        x = self.maxpool3(self.inception3b(self.inception3a(x)))  # (B, 480, H/16, W/16)
        x = self.inception4a(x)  # (B, 512, H/16, W/16)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # (B, 528, H/16, W/16)
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.maxpool4(self.inception4e(x))  # (B, 832, H/32, W/32)
        x = self.inception5b(self.inception5a(x))  # (B, 1024, H/32, W/32)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 1024)
        x = self.fc(self.dropout(x))  # (B, num_classes)
        if aux1 is not None and aux2 is not None:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


def googlenet(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
              aux_logits: bool = True, transform_input: bool = False,
              five_by_five_kernel: int = 3) -> GoogLeNet:
    """GoogLeNet (Inception v1); the defaults equal ``torchvision.models.googlenet(weights=None)``.

    Args:
        num_classes: number of output logits.
        in_channels: channels of the input image.
        small_input: stem for 28x28/32x32 inputs (see :class:`GoogLeNet`).
        aux_logits: build the two auxiliary classifiers.
        transform_input: re-scale ImageNet-normalised inputs (for TensorFlow-ported weights).
        five_by_five_kernel: 3 as torchvision, 5 as the paper.

    Returns:
        A freshly initialised :class:`GoogLeNet` (6,624,904 parameters without the auxiliary
        classifiers at 1000 classes, 13,004,888 with them).
    """
    return GoogLeNet(num_classes=num_classes, in_channels=in_channels, small_input=small_input,
                     aux_logits=aux_logits, transform_input=transform_input,
                     five_by_five_kernel=five_by_five_kernel)


class InceptionMini(nn.Module):
    """A narrow, shallow Inception network for 28x28/32x32 images, built from :class:`Inception`.

    3x3 stem (stride 1), max-pool, ``stages[0]`` modules at H/2, max-pool, ``stages[1]`` modules at
    H/4, global average pool, linear layer.

    Args:
        num_classes: number of output logits.
        in_channels: channels of the input image.
        stem_channels: filters of the 3x3 stem convolution.
        stages: per stage, the modules' ``(ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)``.
        dropout: before the linear layer.
    """

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1, stem_channels: int = 16,
                 stages: Sequence[Sequence[tuple[int, int, int, int, int, int]]] = (
                     ((16, 16, 24, 4, 8, 8),),  # 16 channels in, 56 out, at H/2
                     ((32, 24, 48, 8, 16, 16), (48, 32, 64, 8, 24, 24)),  # 112 -> 160 at H/4
                 ), dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.stem = BasicConv2d(in_channels, stem_channels, kernel_size=3, padding=1)
        layers: list[nn.Module] = []
        channels = stem_channels
        for stage in stages:
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
            for widths in stage:
                module = Inception(channels, *widths)
                layers.append(module)
                channels = module.out_channels
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, H, W)`` images (H, W >= 4) to ``(B, num_classes)`` logits."""
        if x.dim() != 4 or x.shape[1] != self.in_channels or min(x.shape[-2:]) < 4:
            raise ValueError(f"InceptionMini expects (B, {self.in_channels}, H, W) inputs with "
                             f"H, W >= 4, got {tuple(x.shape)}; build it with the right "
                             "in_channels or resize the images.")
        x = self.features(self.stem(x))  # (B, C, H/4, W/4)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)  # (B, C)
        return self.fc(self.dropout(x))  # (B, num_classes)


def inception_mini(*, num_classes: int = 10, in_channels: int = 1) -> InceptionMini:
    """The quick-profile Inception network trained in the notebook (see :class:`InceptionMini`).

    Args:
        num_classes: number of output logits.
        in_channels: channels of the input image.

    Returns:
        A freshly initialised :class:`InceptionMini` with its default widths.
    """
    return InceptionMini(num_classes=num_classes, in_channels=in_channels)
