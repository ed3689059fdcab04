"""PSPNet (Zhao et al., 2017): a dilated ResNet and a pyramid pooling module for global context.

A fully convolutional network labels each pixel from what its receptive field sees. In a deep ResNet
that field is large on paper, but Zhao et al. observed that the *effective* field is much smaller,
so the network confuses a boat with a car when it ignores the water around it. The pyramid pooling
module (PPM) adds context explicitly: it average-pools the last feature map to ``1x1``, ``2x2``,
``3x3`` and ``6x6`` bins (the whole image, its quarters, ninths and 36ths), reduces each pooled map to
``in_channels / 4`` channels with a 1x1 convolution (one quarter per level, so the four levels
together have as many channels as the input), upsamples them bilinearly to the feature map's size and
concatenates them with the input. A 3x3 convolution and a 1x1 classifier follow.

The backbone is a ResNet whose last stages trade their stride for *dilation* (atrous convolution),
so the features keep 1/8 of the input resolution instead of 1/32 while every 3x3 convolution still
sees as far as before. :func:`dilate_resnet_` applies this change to a ``companion.cnn.resnet.ResNet``
in place, exactly as torchvision's ``replace_stride_with_dilation`` does when the network is built;
:class:`ResNetBackbone` keeps the stem and the four stages (no pooling, no classifier) and returns
every stage's features. ``companion.segmentation.deeplab`` uses the same backbone.

Two details differ from the authors' released PSPNet code: it dilates every 3x3 convolution of a
dilated stage (2 in ``layer3``, 4 in ``layer4``, first blocks included), whereas torchvision and this
module give each dilated stage's first block the previous dilation; and it upsamples with
``align_corners=True``, this module with ``False``.

Taught in: book/04_segmentation/05_pspnet.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from companion.cnn.resnet import BasicBlock, Bottleneck, ResNet, ZeroPadShortcut

STAGES = ("layer1", "layer2", "layer3", "layer4")
OUTPUT_STRIDES = (8, 16, 32)


def _set_conv(conv: nn.Conv2d, *, stride: int | None = None, dilation: int | None = None) -> None:
    """Change a convolution's stride and/or dilation in place; a 3x3 keeps 'same' padding."""
    if stride is not None:
        conv.stride = (stride, stride)
    if dilation is not None and conv.kernel_size != (1, 1):
        conv.dilation = (dilation, dilation)
        conv.padding = (dilation * (conv.kernel_size[0] // 2), dilation * (conv.kernel_size[1] // 2))


def dilate_resnet_(model: ResNet, replace_stride_with_dilation: Sequence[bool] = (False, True, True)) -> ResNet:
    """Replace the stride of ResNet stages 2-4 by dilation, in place (torchvision's rule).

    For every stage ``i`` marked True the dilation doubles: the stage's first block loses its
    stride 2 (its 3x3 convolutions keep the *previous* dilation, its projection shortcut becomes
    1x1/1) and the following blocks use the new dilation on their 3x3 convolutions. The weights are
    unchanged, so a pretrained ResNet stays usable. The result equals torchvision's
    ``resnet50(replace_stride_with_dilation=...)`` with the same state dict.

    Args:
        model: a ``companion.cnn.resnet.ResNet`` (BasicBlock or Bottleneck).
        replace_stride_with_dilation: three booleans for stages 2, 3 and 4 (``layer2..layer4``).

    Returns:
        ``model`` itself, modified.

    Raises:
        ValueError: not three booleans, or a block that is neither BasicBlock nor Bottleneck.
    """
    flags = tuple(bool(flag) for flag in replace_stride_with_dilation)
    if len(flags) != 3:
        raise ValueError(f"replace_stride_with_dilation needs three booleans (stages 2, 3, 4), got {flags}.")
    dilation = 1
    for stage, dilate in zip(STAGES[1:], flags):
        blocks = list(getattr(model, stage))
        if not dilate:
            if dilation > 1:  # an undilated stage after a dilated one keeps the current dilation
                for block in blocks:
                    for conv in _block_3x3(block):
                        _set_conv(conv, dilation=dilation)
            continue
        previous, dilation = dilation, dilation * 2
        first = blocks[0]
        for conv in _block_3x3(first):
            _set_conv(conv, stride=1 if conv.stride != (1, 1) else None, dilation=previous)
        if isinstance(first.downsample, nn.Sequential):
            _set_conv(first.downsample[0], stride=1)  # the 1x1 projection
        elif isinstance(first.downsample, ZeroPadShortcut):
            first.downsample.stride = 1
        first.stride = 1
        for block in blocks[1:]:
            for conv in _block_3x3(block):
                _set_conv(conv, dilation=dilation)
    return model


def _block_3x3(block: nn.Module) -> list[nn.Conv2d]:
    """The 3x3 convolutions of a residual block."""
    if isinstance(block, BasicBlock):
        return [block.conv1, block.conv2]
    if isinstance(block, Bottleneck):
        return [block.conv2]
    raise ValueError(f"dilate_resnet_ handles BasicBlock and Bottleneck, got {type(block).__name__}.")


class ResNetBackbone(nn.Module):
    """A ResNet without its pooling and classifier: returns the features of all four stages.

    Module names are those of ``companion.cnn.resnet.ResNet`` (and torchvision's), so a ResNet's
    state dict loads with ``strict=False`` (the ``fc`` keys are unused).

    Args:
        resnet: a (possibly dilated) ``ResNet``; its stem and stages are reused, not copied.

    Attributes:
        channels: output channels of ``layer1..layer4``.
        strides: cumulative stride of ``layer1..layer4`` relative to the input.
    """

    def __init__(self, resnet: ResNet) -> None:
        super().__init__()
        self.in_channels = resnet.in_channels
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (resnet.layer1, resnet.layer2, resnet.layer3,
                                                              resnet.layer4)
        self.channels = tuple(_stage_channels(getattr(self, stage)) for stage in STAGES)
        stride = 1 if resnet.small_input else 4
        strides = []
        for stage in STAGES:
            stride *= getattr(self, stage)[0].stride
            strides.append(stride)
        self.strides = tuple(strides)

    @property
    def output_stride(self) -> int:
        """Input size divided by the size of the last stage's features."""
        return self.strides[-1]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, C_in, H, W)`` -> ``{"layer1": (B, c1, H/s1, W/s1), ..., "layer4": (B, c4, H/s4, W/s4)}``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}; "
                             f"build the model with in_channels={x.shape[-3] if x.dim() >= 3 else '?'}.")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, c0, H/4, W/4)
        features = {}
        for stage in STAGES:
            x = getattr(self, stage)(x)
            features[stage] = x
        return features


def _stage_channels(stage: nn.Sequential) -> int:
    last = stage[-1]
    return (last.bn3 if isinstance(last, Bottleneck) else last.bn2).num_features


def dilated_resnet(block: type[BasicBlock | Bottleneck], layers: Sequence[int], widths: Sequence[int],
                   *, output_stride: int = 8, in_channels: int = 3) -> ResNetBackbone:
    """A ResNet backbone (ImageNet stem, stride 32) dilated down to ``output_stride``.

    Args:
        block, layers, widths: as for ``companion.cnn.resnet.ResNet``.
        output_stride: 8 (dilate stages 3 and 4, PSPNet and DeepLab's dense setting), 16 (stage 4
            only) or 32 (no dilation).
        in_channels: channels of the input images.

    Returns:
        A :class:`ResNetBackbone` whose ``layer4`` features have stride ``output_stride``.
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}.")
    flags = {8: (False, True, True), 16: (False, False, True), 32: (False, False, False)}[output_stride]
    resnet = ResNet(block, layers, widths, num_classes=1, in_channels=in_channels)
    return ResNetBackbone(dilate_resnet_(resnet, flags))


class PyramidPoolingModule(nn.Module):
    """Pool to ``bins x bins`` grids, reduce, upsample and concatenate with the input.

    ``(B, C, h, w) -> (B, C + len(bins) * reduced, h, w)`` with ``reduced = C // len(bins)`` by
    default (the paper's ``1/N`` with ``N = 4`` levels). Each level is
    ``AdaptiveAvgPool2d(bins) -> 1x1 conv -> BN -> ReLU``; training needs more than one value per
    channel in the batch norm, so a batch of one image fails on the ``1x1`` level in train mode.

    Args:
        in_channels: channels ``C`` of the feature map.
        bins: output sizes of the adaptive average pools, ``(1, 2, 3, 6)`` in the paper.
        reduced_channels: channels of each level after its 1x1 convolution (default ``C // len(bins)``).
    """

    def __init__(self, in_channels: int, bins: Sequence[int] = (1, 2, 3, 6),
                 reduced_channels: int | None = None) -> None:
        super().__init__()
        if not bins or min(bins) < 1:
            raise ValueError(f"bins must be positive grid sizes such as (1, 2, 3, 6), got {tuple(bins)}.")
        reduced = reduced_channels if reduced_channels is not None else in_channels // len(bins)
        if reduced < 1:
            raise ValueError(f"{in_channels} input channels over {len(bins)} levels leave no channel per level; "
                             "pass reduced_channels or use fewer bins.")
        self.bins = tuple(bins)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(size), nn.Conv2d(in_channels, reduced, 1, bias=False),
                          nn.BatchNorm2d(reduced), nn.ReLU(inplace=True))
            for size in self.bins)
        self.out_channels = in_channels + len(self.bins) * reduced

    def pooled(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each level before upsampling: ``[(B, reduced, b, b) for b in bins]``."""
        return [stage(x) for stage in self.stages]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        levels = [F.interpolate(level, size=size, mode="bilinear", align_corners=False)
                  for level in self.pooled(x)]  # each (B, reduced, h, w)
        return torch.cat([x, *levels], dim=1)  # (B, C + len(bins) * reduced, h, w)


def _conv_head(in_channels: int, channels: int, num_classes: int, dropout: float) -> nn.Sequential:
    """3x3 conv -> BN -> ReLU -> dropout -> 1x1 classifier."""
    return nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                         nn.ReLU(inplace=True), nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))


class PSPNet(nn.Module):
    """Dilated backbone -> pyramid pooling -> 3x3 conv -> classifier -> bilinear upsampling.

    ``(B, 3, H, W) -> (B, num_classes, H, W)`` for any ``H, W``. With ``aux_loss=True`` the model
    also classifies ``layer3``'s features (the paper's deeply supervised auxiliary loss, weight 0.4):
    in training mode it returns ``{"out": logits, "aux": aux_logits}`` (train it with
    :func:`pspnet_loss`); in eval mode the paper drops the auxiliary branch, so the model skips it
    and returns the logits alone, and evaluation code needs no special case. (torchvision's
    segmentation models return the dict in both modes.)

    Args:
        backbone: a :class:`ResNetBackbone` (usually from :func:`dilated_resnet`, stride 8).
        num_classes: classes including the background.
        bins: pyramid levels.
        head_channels: channels of the 3x3 convolution after the pyramid (512 in the paper).
        dropout: dropout before the classifier (0.1 in the paper).
        aux_loss: add the auxiliary classifier on ``layer3``.
    """

    def __init__(self, backbone: ResNetBackbone, num_classes: int, *, bins: Sequence[int] = (1, 2, 3, 6),
                 head_channels: int = 512, dropout: float = 0.1, aux_loss: bool = False) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        self.backbone = backbone
        self.ppm = PyramidPoolingModule(backbone.channels[-1], bins)
        self.classifier = _conv_head(self.ppm.out_channels, head_channels, num_classes, dropout)
        self.aux_classifier = (_conv_head(backbone.channels[2], max(head_channels // 2, 1), num_classes, dropout)
                               if aux_loss else None)

    def forward(self, images: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = images.shape[-2:]
        features = self.backbone(images)
        x = self.ppm(features["layer4"])  # (B, 2 * c4, H/8, W/8)
        logits = F.interpolate(self.classifier(x), size=size, mode="bilinear", align_corners=False)  # (B, K, H, W)
        if self.aux_classifier is None or not self.training:  # the auxiliary branch only trains
            return logits
        aux = F.interpolate(self.aux_classifier(features["layer3"]), size=size, mode="bilinear",
                            align_corners=False)  # (B, K, H, W)
        return {"out": logits, "aux": aux}


def pspnet_loss(outputs: torch.Tensor | dict[str, torch.Tensor], target: torch.Tensor, *,
                aux_weight: float = 0.4, ignore_index: int = 255) -> torch.Tensor:
    """Cross-entropy of the main logits plus ``aux_weight`` times that of the auxiliary logits.

    Args:
        outputs: ``(B, K, H, W)`` logits, or ``{"out": ..., "aux": ...}`` from ``PSPNet(aux_loss=True)``.
        target: ``(B, H, W)`` int64 class indices; ``ignore_index`` pixels are skipped.
        aux_weight: weight of the auxiliary term (0.4 in the paper).
        ignore_index: label of pixels that count nowhere.

    Returns:
        The scalar loss.
    """
    if isinstance(outputs, torch.Tensor):
        return F.cross_entropy(outputs, target, ignore_index=ignore_index)
    loss = F.cross_entropy(outputs["out"], target, ignore_index=ignore_index)
    return loss + aux_weight * F.cross_entropy(outputs["aux"], target, ignore_index=ignore_index)


MINI_LAYERS = (1, 1, 1, 1)
MINI_WIDTHS = (16, 32, 64, 128)


def pspnet_mini(num_classes: int, *, in_channels: int = 3, output_stride: int = 8,
                aux_loss: bool = False) -> PSPNet:
    """The quick profile's PSPNet: a ResNet-18-style backbone of one BasicBlock per stage.

    Widths ``MINI_WIDTHS = (16, 32, 64, 128)``, the ImageNet stem, stages 3 and 4 dilated (output
    stride 8: 96x96 images give 12x12 features), bins ``(1, 2, 3, 6)``, a 64-channel head.
    """
    backbone = dilated_resnet(BasicBlock, MINI_LAYERS, MINI_WIDTHS, output_stride=output_stride,
                              in_channels=in_channels)
    return PSPNet(backbone, num_classes, head_channels=64, aux_loss=aux_loss)
