"""SegNet (Badrinarayanan, Kendall & Cipolla, TPAMI 2017): upsampling with the encoder's pooling indices.

The encoder is VGG16's 13 convolutions (each followed by batch norm and ReLU) in five stages, each
stage ending with a 2x2 max-pool of stride 2 that also records *where* every maximum came from (its
"pooling indices"). The decoder mirrors the encoder: each stage first *unpools* (every value goes
back to the position its maximum came from, the other three positions of the 2x2 window are zero,
a sparse map), then convolutions densify the sparse map. A final convolution gives class scores.
(Here the decoder mirrors all 13 encoder convolutions and a separate 3x3 classifier follows; in the
authors' Caffe model the last decoder convolution is itself the classifier, one 64-channel
convolution fewer.)

What crosses from the encoder to the decoder is only the indices, not the feature maps: U-Net keeps
a float feature map of ``C x H x W`` per skip until the backward pass; SegNet keeps the argmax
positions of ``C x H/2 x W/2`` windows (2 bits per window in the paper's accounting; PyTorch stores
them as int64). The decoder has no trainable upsampling filters either (unlike FCN's transposed
convolutions or U-Net's up-convolutions).

Odd sizes: a floor-mode pool drops the last row/column of an odd map; ``max_unpool2d`` is given the
pre-pool size (``output_size``) so the decoder restores it exactly (the dropped row stays zero
until the next convolution).

Taught in: book/04_segmentation/04_segnet.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# The paper's encoder: VGG16's 13 convolutions, (widths, convolutions) per stage.
VGG16_STAGES: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
MINI_STAGES: tuple[tuple[int, int], ...] = ((16, 1), (32, 1), (64, 2), (96, 2))


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """3x3 convolution (same padding), batch norm, ReLU: ``(B, in, H, W) -> (B, out, H, W)``."""
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True)]


class SegNet(nn.Module):
    """Encoder with index-recording max-pools, decoder with max-unpooling, no skip feature maps.

    Shapes for an input ``(B, in_channels, H, W)`` and stages ``((C1, n1), ..., (CS, nS))``: encoder
    stage ``s`` gives ``(B, Cs, H / 2**(s-1), W / 2**(s-1))`` then pools (floored) to half; decoder
    stage ``s`` unpools back to the recorded size and convolves to ``C(s-1)`` channels (``C1`` for
    the first stage); a 3x3 convolution gives the logits ``(B, num_classes, H, W)``.

    Args:
        num_classes: classes including the background.
        in_channels: channels of the input image.
        stages: ``(width, convolutions)`` per encoder stage (``VGG16_STAGES`` in the paper).
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3,
                 stages: Sequence[tuple[int, int]] = VGG16_STAGES) -> None:
        super().__init__()
        if len(stages) < 1 or any(width < 1 or count < 1 for width, count in stages):
            raise ValueError(f"stages must be non-empty (width, convolutions) pairs of positive ints, got {stages}.")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.encoder = nn.ModuleList()
        channels = in_channels
        for width, count in stages:
            layers: list[nn.Module] = []
            for _ in range(count):
                layers += conv_bn_relu(channels, width)
                channels = width
            self.encoder.append(nn.Sequential(*layers))
        # Decoder stage s mirrors encoder stage s: its convolutions keep Cs and the last one maps to
        # the width of the stage above (C(s-1)), so the next unpooling sees the right channels.
        self.decoder = nn.ModuleList()
        for index in range(len(stages) - 1, -1, -1):
            width, count = stages[index]
            out_width = stages[index - 1][0] if index > 0 else stages[0][0]
            layers = []
            for step in range(count):
                layers += conv_bn_relu(width, out_width if step == count - 1 else width)
            self.decoder.append(nn.Sequential(*layers))
        self.classifier = nn.Conv2d(stages[0][0], num_classes, 3, padding=1)  # (B, K, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(B, in_channels, H, W)`` to logits ``(B, num_classes, H, W)``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"SegNet expects images (B, {self.in_channels}, H, W), got {tuple(x.shape)}.")
        if min(x.shape[-2:]) < 2 ** len(self.encoder):
            raise ValueError(f"SegNet with {len(self.encoder)} pools needs inputs of at least "
                             f"{2 ** len(self.encoder)} pixels per side, got {tuple(x.shape[-2:])}.")
        records = []  # (indices, pre-pool size) per stage: all the decoder gets from the encoder
        for stage in self.encoder:
            x = stage(x)  # (B, Cs, h, w)
            size = x.shape[-2:]
            x, indices = F.max_pool2d(x, 2, stride=2, return_indices=True)  # (B, Cs, h/2, w/2) twice
            records.append((indices, size))
        for stage in self.decoder:
            indices, size = records.pop()
            x = F.max_unpool2d(x, indices, 2, stride=2, output_size=size)  # (B, Cs, h, w), sparse
            x = stage(x)  # (B, C(s-1), h, w)
        return self.classifier(x)  # (B, K, H, W)


def segnet_vgg16(*, num_classes: int = 11, in_channels: int = 3) -> SegNet:
    """The paper's SegNet: VGG16 encoder (13 convolutions), mirrored decoder; CamVid's 11 classes.

    CamVid's void pixels are not a class: the authors' model outputs 11 scores and ignores void in the
    loss (label them 255 and use ``ignore_index=255``).
    """
    return SegNet(num_classes=num_classes, in_channels=in_channels, stages=VGG16_STAGES)


def segnet_mini(num_classes: int, *, in_channels: int = 3) -> SegNet:
    """A narrow SegNet for the quick profile: four stages, 16-96 filters."""
    return SegNet(num_classes=num_classes, in_channels=in_channels, stages=MINI_STAGES)
