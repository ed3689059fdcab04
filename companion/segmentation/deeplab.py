"""DeepLab v3 (Chen et al., 2017) and v3+ (Chen et al., 2018): atrous convolution, ASPP, a decoder.

**Atrous (dilated) convolution.** A 3x3 convolution with dilation (rate) ``r`` reads its nine inputs
``r`` pixels apart:

    y[i, j] = sum_{u, v in {-1, 0, 1}} w[u, v] * x[i + r u, j + r v]

It is the ordinary convolution with a ``(2r + 1) x (2r + 1)`` kernel whose taps between the nine
weights are zero ("holes", *trous* in French), so it sees a ``2r + 1`` wide window with nine weights
and the same cost. Replacing the stride 2 of a ResNet stage by stride 1 and doubling the dilation of
every later 3x3 convolution keeps each layer's field of view while the features stay twice as large.
The *output stride* is the input size divided by the final feature map's size: 32 for a plain
ResNet, 16 or 8 when the last one or two stages are dilated (``companion.segmentation.pspnet.
dilated_resnet``).

**ASPP** (atrous spatial pyramid pooling) runs in parallel on the backbone's features a 1x1
convolution, three 3x3 convolutions with rates ``(6, 12, 18)`` at output stride 16 (doubled at
stride 8) and an image-level branch (global average pool, 1x1 convolution, upsampled back), each with
batch norm and ReLU, concatenates the five results and projects them with a 1x1 convolution.
:class:`ASPP` has torchvision's module tree and parameter names (``convs.0`` ... ``convs.4``,
``project``), so state dicts load both ways and outputs match torchvision's ASPP.

**DeepLab v3** classifies ASPP's output and upsamples the logits bilinearly to the input. In the
paper ASPP's 1x1 projection feeds the final 1x1 classifier directly; :class:`DeepLabHead` is
torchvision's head, which puts a 3x3 convolution with batch norm and ReLU between the two.
**DeepLab v3+** adds a decoder: ASPP's output is upsampled by 4, concatenated with the backbone's
stride-4 features reduced to 48 channels by a 1x1 convolution, refined by two 3x3 convolutions and
upsampled by 4 again.

Neither v3 nor v3+ has a CRF. DeepLab v1 (ICLR 2015) and v2 (TPAMI 2018) post-processed the network's
output with a fully connected CRF that was not trained with the network; v3 dropped it.

Taught in: book/04_segmentation/06_deeplab.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from companion.cnn.resnet import BasicBlock
from companion.segmentation.pspnet import MINI_LAYERS, MINI_WIDTHS, ResNetBackbone, dilated_resnet

PAPER_RATES = (6, 12, 18)  # at output stride 16; doubled to (12, 24, 36) at output stride 8


def _rates_for_stride(rates_at_16: Sequence[int], output_stride: int) -> tuple[int, ...]:
    """Rates chosen for output stride 16, scaled to ``output_stride`` (doubled at 8, halved at 32, at least 1)."""
    return tuple(max(rate * 16 // output_stride, 1) for rate in rates_at_16)


def paper_rates(output_stride: int) -> tuple[int, ...]:
    """ASPP's rates for a backbone's output stride: ``PAPER_RATES`` at 16, doubled at 8, halved at 32."""
    return _rates_for_stride(PAPER_RATES, output_stride)


class ASPPConv(nn.Sequential):
    """3x3 atrous convolution (rate ``dilation``, 'same' padding) -> BN -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


class ASPPPooling(nn.Sequential):
    """Image-level features: global average pool -> 1x1 conv -> BN -> ReLU -> upsample to ``(h, w)``.

    ``(B, C, h, w) -> (B, out_channels, h, w)``, constant over space. In train mode the batch norm
    needs more than one image per batch.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)  # ends as (B, out_channels, 1, 1)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # (B, out_channels, h, w)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, one 3x3 per rate, image pooling; concatenate; project.

    ``(B, in_channels, h, w) -> (B, out_channels, h, w)``. Same modules and names as
    ``torchvision.models.segmentation.deeplabv3.ASPP`` (dropout 0.5 after the projection, as there).

    Args:
        in_channels: channels of the backbone's features.
        atrous_rates: dilation of each 3x3 branch, e.g. ``(6, 12, 18)`` at output stride 16.
        out_channels: channels of every branch and of the output (256 in the papers).
    """

    def __init__(self, in_channels: int, atrous_rates: Sequence[int], out_channels: int = 256) -> None:
        super().__init__()
        rates = tuple(int(rate) for rate in atrous_rates)
        if min(rates, default=1) < 1:
            raise ValueError(f"atrous_rates must be positive integers, got {rates}.")
        branches: list[nn.Module] = [nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                                   nn.BatchNorm2d(out_channels), nn.ReLU())]
        branches += [ASPPConv(in_channels, out_channels, rate) for rate in rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.atrous_rates = rates
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False),
                                     nn.BatchNorm2d(out_channels), nn.ReLU(), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [branch(x) for branch in self.convs]  # each (B, out_channels, h, w)
        return self.project(torch.cat(branches, dim=1))  # (B, (len(rates) + 2) * out, h, w) -> (B, out, h, w)


class DeepLabHead(nn.Sequential):
    """torchvision's DeepLab v3 head: ASPP -> 3x3 conv -> BN -> ReLU -> 1x1 classifier (its names too).

    The paper has no 3x3 convolution here: ASPP's 1x1 projection feeds the 1x1 classifier.
    """

    def __init__(self, in_channels: int, num_classes: int, atrous_rates: Sequence[int] = (12, 24, 36),
                 channels: int = 256) -> None:
        super().__init__(ASPP(in_channels, atrous_rates, channels),
                         nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                         nn.ReLU(), nn.Conv2d(channels, num_classes, 1))


def _check_num_classes(num_classes: int) -> None:
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")


class DeepLabV3(nn.Module):
    """Backbone -> :class:`DeepLabHead` -> bilinear upsampling to the input size.

    ``(B, 3, H, W) -> (B, num_classes, H, W)``. Attribute names follow torchvision (``backbone``,
    ``classifier``); torchvision returns a dict ``{"out": ...}``, this model the logits.

    Args:
        backbone: a :class:`~companion.segmentation.pspnet.ResNetBackbone` (stride 8 or 16).
        num_classes: classes including the background.
        atrous_rates: ASPP rates; default :func:`paper_rates` of the backbone's ``output_stride``
            ((6, 12, 18) at 16, (12, 24, 36) at 8).
        channels: ASPP and head channels (256 in the paper).
    """

    def __init__(self, backbone: ResNetBackbone, num_classes: int, *, atrous_rates: Sequence[int] | None = None,
                 channels: int = 256) -> None:
        super().__init__()
        _check_num_classes(num_classes)
        self.backbone = backbone
        rates = paper_rates(backbone.output_stride) if atrous_rates is None else atrous_rates
        self.classifier = DeepLabHead(backbone.channels[-1], num_classes, rates, channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.backbone(images)["layer4"])  # (B, K, H/os, W/os)
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)  # (B, K, H, W)


class DeepLabV3PlusDecoder(nn.Module):
    """v3+'s decoder: upsample ASPP's output to the low-level features, concatenate, refine, classify.

    ``aspp (B, C_a, h, w)``, ``low_level (B, C_l, H/4, W/4)`` -> logits ``(B, num_classes, H/4, W/4)``.

    Args:
        low_level_channels: channels of the backbone's stride-4 features.
        aspp_channels: channels of ASPP's output.
        num_classes: classes including the background.
        reduced_channels: the 1x1 reduction of the low-level features (48 in the paper, so they do
            not outweigh the 256 ASPP channels).
        channels: channels of the two 3x3 refinement convolutions (256 in the paper).
    """

    def __init__(self, low_level_channels: int, aspp_channels: int, num_classes: int, *,
                 reduced_channels: int = 48, channels: int = 256) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(low_level_channels, reduced_channels, 1, bias=False),
                                    nn.BatchNorm2d(reduced_channels), nn.ReLU())
        self.refine = nn.Sequential(
            nn.Conv2d(aspp_channels + reduced_channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, aspp: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        aspp = F.interpolate(aspp, size=low_level.shape[-2:], mode="bilinear",
                             align_corners=False)  # (B, C_a, H/4, W/4): x4 at output stride 16
        x = torch.cat([aspp, self.reduce(low_level)], dim=1)  # (B, C_a + 48, H/4, W/4)
        return self.classifier(self.refine(x))  # (B, K, H/4, W/4)


class DeepLabV3Plus(nn.Module):
    """Encoder (dilated backbone + ASPP) and decoder (stride-4 features) -> upsampling to the input.

    ``(B, 3, H, W) -> (B, num_classes, H, W)`` for any ``H, W``.

    Args:
        backbone: a :class:`~companion.segmentation.pspnet.ResNetBackbone`; ``layer4`` feeds ASPP,
            ``layer1`` (stride 4) the decoder.
        num_classes: classes including the background.
        atrous_rates: ASPP rates; default :func:`paper_rates` of the backbone's ``output_stride``
            ((6, 12, 18) at 16, (12, 24, 36) at 8).
        aspp_channels: channels of ASPP (256 in the paper).
        reduced_channels: the decoder's 1x1 reduction of the low-level features (48).
        decoder_channels: channels of the decoder's 3x3 convolutions (256).
    """

    def __init__(self, backbone: ResNetBackbone, num_classes: int, *, atrous_rates: Sequence[int] | None = None,
                 aspp_channels: int = 256, reduced_channels: int = 48, decoder_channels: int = 256) -> None:
        super().__init__()
        _check_num_classes(num_classes)
        self.backbone = backbone
        rates = paper_rates(backbone.output_stride) if atrous_rates is None else atrous_rates
        self.aspp = ASPP(backbone.channels[-1], rates, aspp_channels)
        self.decoder = DeepLabV3PlusDecoder(backbone.channels[0], aspp_channels, num_classes,
                                            reduced_channels=reduced_channels, channels=decoder_channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        aspp = self.aspp(features["layer4"])  # (B, C_a, H/os, W/os)
        logits = self.decoder(aspp, features["layer1"])  # (B, K, H/4, W/4)
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)  # (B, K, H, W)


MINI_RATES = (1, 2, 3)  # at output stride 16 on 96x96 images (6x6 features); doubled at stride 8


def mini_rates(output_stride: int) -> tuple[int, ...]:
    """ASPP rates of the mini models: ``MINI_RATES`` at stride 16, doubled at 8, none useful at 32."""
    return _rates_for_stride(MINI_RATES, output_stride)


def deeplabv3_mini(num_classes: int, *, in_channels: int = 3, output_stride: int = 16) -> DeepLabV3:
    """The quick profile's DeepLab v3: the backbone of ``pspnet_mini`` and 64-channel ASPP."""
    backbone = dilated_resnet(BasicBlock, MINI_LAYERS, MINI_WIDTHS, output_stride=output_stride,
                              in_channels=in_channels)
    return DeepLabV3(backbone, num_classes, atrous_rates=mini_rates(output_stride), channels=64)


def deeplabv3plus_mini(num_classes: int, *, in_channels: int = 3, output_stride: int = 16) -> DeepLabV3Plus:
    """The quick profile's DeepLab v3+.

    The ``pspnet_mini`` backbone (one BasicBlock per stage, widths ``(16, 32, 64, 128)``, ImageNet
    stem) dilated to ``output_stride`` (16: 96x96 images give 6x6 features; 8: 12x12), ASPP with 64
    channels and rates :func:`mini_rates` (the paper's 6/12/18 would reach far outside a 6x6 map),
    the decoder with a 16-channel reduction of ``layer1`` and 64-channel 3x3 convolutions.
    """
    backbone = dilated_resnet(BasicBlock, MINI_LAYERS, MINI_WIDTHS, output_stride=output_stride,
                              in_channels=in_channels)
    return DeepLabV3Plus(backbone, num_classes, atrous_rates=mini_rates(output_stride), aspp_channels=64,
                         reduced_channels=16, decoder_channels=64)
