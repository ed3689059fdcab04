"""Inception v3 (Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", 2016).

Inception v3 keeps GoogLeNet's idea of parallel branches and makes every branch cheaper:

- a 5x5 convolution becomes two stacked 3x3 convolutions (same receptive field, 18 instead of 25
  weights per input-output channel pair): the ``branch3x3dbl`` branches;
- an n x n convolution becomes a 1 x n followed by an n x 1 (2n instead of n^2 weights): the 7x7
  branches of :class:`InceptionC` and the split 1x3 / 3x1 outputs of :class:`InceptionE`;
- the grid is shrunk by stride-2 convolution and stride-2 pooling side by side, concatenated
  (:class:`InceptionB`, :class:`InceptionD`), instead of pooling before or after an expensive layer.

:class:`Inception3` at its defaults has torchvision's module names and forward pass (the layout of
the TensorFlow release, which keeps one 5x5 branch in :class:`InceptionA` next to the double 3x3),
so ``model.load_state_dict(torchvision.models.inception_v3(weights=None).state_dict())`` works with
strict keys and both give the same logits. Label smoothing, the paper's third ingredient, is a loss
(``nn.CrossEntropyLoss(label_smoothing=0.1)``), not part of the model.

Taught in: book/02_cnn/05_inception.ipynb.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from companion.cnn.googlenet import BasicConv2d, transform_imagenet_input

# Smallest input side: the stride-2 layers without padding need at least 75 pixels (ImageNet stem),
# 299 for the auxiliary classifier (its 5x5 convolution needs a 17x17 grid) in training mode, 15 with
# the small-input stem.
MIN_SIDE = {"imagenet": 75, "imagenet_aux": 299, "small": 15}


class InceptionA(nn.Module):
    """35x35 module: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg-pool -> 1x1. Out: 224 + pool_features."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)  # (B, 64, H, W)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))  # (B, 64, H, W)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))  # (B, 96, ..)
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([branch1x1, branch5x5, branch3x3dbl, branch_pool], dim=1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17: 3x3/2 conv | 1x1 -> 3x3 -> 3x3/2 | 3x3/2 max-pool. Out: 480 + C_in."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3(x)  # (B, 384, (H-3)//2+1, ..)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))  # (B, 96, ..)
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, C_in, ..)
        return torch.cat([branch3x3, branch3x3dbl, branch_pool], dim=1)


class InceptionC(nn.Module):
    """17x17 module with 7x7 convolutions factorised into 1x7 and 7x1. Out: 768 channels."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        row, col = {"kernel_size": (1, 7), "padding": (0, 3)}, {"kernel_size": (7, 1), "padding": (3, 0)}
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, **row)
        self.branch7x7_3 = BasicConv2d(c7, 192, **col)
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, **row)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, **row)
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)  # (B, 192, H, W)
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))  # (B, 192, H, W)
        branch7x7dbl = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = layer(branch7x7dbl)  # ends at (B, 192, H, W)
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([branch1x1, branch7x7, branch7x7dbl, branch_pool], dim=1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max-pool. Out: 512 + C_in."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))  # (B, 320, (H-3)//2+1, ..)
        branch7x7x3 = self.branch7x7x3_2(self.branch7x7x3_1(x))
        branch7x7x3 = self.branch7x7x3_4(self.branch7x7x3_3(branch7x7x3))  # (B, 192, ..)
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, C_in, ..)
        return torch.cat([branch3x3, branch7x7x3, branch_pool], dim=1)


class InceptionE(nn.Module):
    """8x8 module whose 3x3 outputs are split into parallel 1x3 and 3x1 convolutions. Out: 2048."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        row, col = {"kernel_size": (1, 3), "padding": (0, 1)}, {"kernel_size": (3, 1), "padding": (1, 0)}
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, **row)
        self.branch3x3_2b = BasicConv2d(384, 384, **col)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, **row)
        self.branch3x3dbl_3b = BasicConv2d(384, 384, **col)
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)  # (B, 320, H, W)
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)  # 768
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl),
                                  self.branch3x3dbl_3b(branch3x3dbl)], dim=1)  # (B, 768, H, W)
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([branch1x1, branch3x3, branch3x3dbl, branch_pool], dim=1)  # (B, 2048, H, W)


class InceptionAux(nn.Module):
    """Auxiliary classifier on the 17x17 grid: 5x5/3 avg-pool, 1x1 conv (128), 5x5 conv (768), FC.

    With ``small_input=True`` the average pool is adaptive (to 5x5), so the head works on the small
    grids that 28x28/32x32 images produce.
    """

    def __init__(self, in_channels: int, num_classes: int, small_input: bool = False) -> None:
        super().__init__()
        self.small_input = small_input
        self.conv0 = BasicConv2d(in_channels, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.conv1.stddev = 0.01  # initialisation scale, read by _init_weights
        self.fc = nn.Linear(768, num_classes)
        self.fc.stddev = 0.001

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.small_input:
            x = F.adaptive_avg_pool2d(x, (5, 5))  # (B, 768, 5, 5)
        else:
            x = F.avg_pool2d(x, kernel_size=5, stride=3)  # (B, 768, 5, 5) at 17x17
        x = self.conv1(self.conv0(x))  # (B, 768, 1, 1)
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)  # (B, 768)
        return self.fc(x)  # (B, num_classes)


class InceptionOutputs(NamedTuple):
    """What Inception v3 with the auxiliary classifier returns in training mode."""

    logits: torch.Tensor  # (B, num_classes)
    aux_logits: torch.Tensor  # (B, num_classes)


def _init_weights(model: nn.Module) -> None:
    """torchvision's scheme: truncated normal weights, std 0.1 unless the layer sets ``stddev``."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            stddev = float(getattr(module, "stddev", 0.1))
            nn.init.trunc_normal_(module.weight, mean=0.0, std=stddev, a=-2, b=2)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class Inception3(nn.Module):
    """Inception v3: stem, 3 x InceptionA (35x35), B, 4 x InceptionC (17x17), D, 2 x InceptionE (8x8).

    ImageNet configuration (299x299): 3x3/2, 3x3, 3x3 convolutions, max-pool, 1x1 and 3x3
    convolutions, max-pool. ``small_input=True`` (28x28/32x32 images) gives ``Conv2d_1a_3x3`` stride 1,
    pads ``Conv2d_1a_3x3``, ``Conv2d_2a_3x3`` and ``Conv2d_4a_3x3`` by 1, drops the first max-pool and
    makes the auxiliary head's pool adaptive: 28x28 inputs then reach the InceptionA, C and E modules
    at 13x13, 6x6 and 2x2 (32x32 inputs at 15x15, 7x7 and 3x3).

    Args:
        num_classes: number of output logits.
        in_channels: channels of the input image.
        aux_logits: add the auxiliary classifier after ``Mixed_6e`` (used in training mode only).
        transform_input: re-scale ImageNet-normalised inputs for TensorFlow-ported weights (3 channels).
        small_input: the stem for 28x28/32x32 inputs described above.
        dropout: before the final linear layer.
    """

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = True,
                 transform_input: bool = False, small_input: bool = False,
                 dropout: float = 0.5) -> None:
        super().__init__()
        if transform_input and in_channels != 3:
            raise ValueError(f"transform_input=True re-normalises RGB images, but in_channels="
                             f"{in_channels}; use transform_input=False for other inputs.")
        self.in_channels = in_channels
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.small_input = small_input
        first = {"stride": 1, "padding": 1} if small_input else {"stride": 2}
        self.Conv2d_1a_3x3 = BasicConv2d(in_channels, 32, kernel_size=3, **first)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3, padding=int(small_input))
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3, padding=int(small_input))
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)  # -> 256 channels
        self.Mixed_5c = InceptionA(256, pool_features=64)  # -> 288
        self.Mixed_5d = InceptionA(288, pool_features=64)  # -> 288
        self.Mixed_6a = InceptionB(288)  # -> 768, grid halved
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.AuxLogits = InceptionAux(768, num_classes, small_input) if aux_logits else None
        self.Mixed_7a = InceptionD(768)  # -> 1280, grid halved
        self.Mixed_7b = InceptionE(1280)  # -> 2048
        self.Mixed_7c = InceptionE(2048)  # -> 2048
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(2048, num_classes)
        _init_weights(self)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Inception v3 expects (B, {self.in_channels}, H, W) inputs, got "
                             f"{tuple(x.shape)}; build it with in_channels={x.shape[-3]} or convert "
                             "the images.")
        side = min(x.shape[-2:])
        if self.small_input:
            if side < MIN_SIDE["small"]:
                raise ValueError(f"Inception v3 (small_input) needs inputs of at least 15x15, got "
                                 f"{tuple(x.shape[-2:])}; resize the images.")
        elif side < MIN_SIDE["imagenet"]:
            raise ValueError(f"Inception v3 needs inputs of at least 75x75, got "
                             f"{tuple(x.shape[-2:])}; resize the images (it was designed for "
                             "299x299) or build it with small_input=True for 28x28/32x32 images.")
        elif side < MIN_SIDE["imagenet_aux"] and self.AuxLogits is not None and self.training:
            raise ValueError(f"Inception v3's auxiliary classifier needs inputs of at least "
                             f"299x299 in training mode, got {tuple(x.shape[-2:])}; resize the "
                             "images or build the model with aux_logits=False.")

    def forward(self, x: torch.Tensor) -> torch.Tensor | InceptionOutputs:
        """Map ``(B, in_channels, H, W)`` images to ``(B, num_classes)`` logits (299x299 by design).

        In training mode with ``aux_logits`` it returns :class:`InceptionOutputs` (main, aux).
        """
        self._check_input(x)
        if self.transform_input:
            x = transform_imagenet_input(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (B, 64, 147, 147)
        x = self.maxpool1(x)  # (B, 64, 73, 73)
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))  # (B, 192, 35, 35)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))  # (B, 288, 35, 35)
        x = self.Mixed_6a(x)  # (B, 768, 17, 17)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))  # (B, 768, 17, 17)
        aux = self.AuxLogits(x) if self.AuxLogits is not None and self.training else None
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))  # (B, 2048, 8, 8)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 2048)
        x = self.fc(self.dropout(x))  # (B, num_classes)
        if aux is not None:
            return InceptionOutputs(x, aux)
        return x


def inception_v3(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 aux_logits: bool = True, transform_input: bool = False) -> Inception3:
    """Inception v3; the defaults equal ``torchvision.models.inception_v3(weights=None)``.

    Args:
        num_classes: number of output logits.
        in_channels: channels of the input image.
        small_input: stem for 28x28/32x32 inputs (see :class:`Inception3`).
        aux_logits: build the auxiliary classifier.
        transform_input: re-scale ImageNet-normalised inputs (for TensorFlow-ported weights).

    Returns:
        A freshly initialised :class:`Inception3` (23,834,568 parameters without the auxiliary
        classifier at 1000 classes, 27,161,264 with it).
    """
    return Inception3(num_classes=num_classes, in_channels=in_channels, small_input=small_input,
                      aux_logits=aux_logits, transform_input=transform_input)
