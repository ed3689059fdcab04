"""ResNet (He et al., 2016) and ResNeXt (Xie et al., 2017): residual blocks, shortcuts, builders.

A residual block computes ``y = relu(F(x) + shortcut(x))``: the stacked layers ``F`` learn a
*residual* that is added to the block's input instead of a whole new mapping. ``shortcut`` is the
identity when the block keeps the shape of ``x``; when it changes (stride 2, more channels) the paper
offers three options, all available here through ``shortcut=``:

- ``"A"``: identity with zero-padding of the extra channels (and stride-2 subsampling); no parameters.
- ``"B"``: a 1x1 projection (convolution + batch norm) only where the shape changes (torchvision's
  choice and the default).
- ``"C"``: a projection on every block.

``residual=False`` removes the shortcuts altogether and gives the *plain* network of the same depth
and width that the paper compares against.

With the default arguments every builder matches torchvision's model of the same name: the same
module tree and parameter names (``load_state_dict`` with strict keys works both ways), the same
forward pass and the same initialisation.

Taught in: book/02_cnn/06_resnet.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SHORTCUTS = ("A", "B", "C")
IMAGENET_WIDTHS = (64, 128, 256, 512)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (batch norm follows it)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: subsample by ``stride`` and append zero channels up to ``out_channels``.

    ``(B, C_in, H, W) -> (B, C_out, ceil(H / stride), ceil(W / stride))``; no parameters.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option A pads channels and cannot reduce {in_channels} to {out_channels}; "
                             "use shortcut='B' or 'C' (a projection).")
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]  # (B, C_in, H', W')
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # (B, C_out, H', W')


def make_shortcut(in_channels: int, out_channels: int, stride: int, shortcut: str) -> nn.Module | None:
    """The shortcut of one block; ``None`` means the identity.

    Args:
        in_channels: channels entering the block.
        out_channels: channels leaving the block.
        stride: the block's stride.
        shortcut: ``"A"``, ``"B"`` or ``"C"`` (see the module docstring).

    Returns:
        ``None`` (identity), a :class:`ZeroPadShortcut`, or ``Sequential(conv1x1, BatchNorm2d)``.
    """
    if shortcut not in SHORTCUTS:
        raise ValueError(f"unknown shortcut option {shortcut!r}; valid options are {', '.join(SHORTCUTS)}.")
    shape_changes = stride != 1 or in_channels != out_channels
    if shortcut == "C" or (shortcut == "B" and shape_changes):
        return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
    if shortcut == "A" and shape_changes:
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return None


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut around them (ResNet-18 and -34).

    ``(B, in_channels, H, W) -> (B, channels, H / stride, W / stride)``.

    Args:
        in_channels: channels of the input.
        channels: channels of both convolutions and of the output (``expansion = 1``).
        stride: stride of the first convolution (2 at the start of a stage, else 1).
        shortcut: ``"A"``, ``"B"`` or ``"C"``.
        residual: False drops the shortcut: the plain network's block.
        groups, width_per_group: only the defaults (1, 64) are allowed, as in torchvision.
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, shortcut: str = "B",
                 residual: bool = True, groups: int = 1, width_per_group: int = 64) -> None:
        super().__init__()
        if groups != 1 or width_per_group != 64:
            raise ValueError("BasicBlock supports only groups=1 and width_per_group=64; "
                             "use Bottleneck for ResNeXt or wide ResNets.")
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.residual = residual
        self.downsample = make_shortcut(in_channels, channels, stride, shortcut) if residual else None
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (B, channels, H/s, W/s)
        out = self.bn2(self.conv2(out))  # F(x): (B, channels, H/s, W/s)
        if self.residual:
            out += x if self.downsample is None else self.downsample(x)  # F(x) + shortcut(x), in place
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand, with a shortcut (ResNet-50 and deeper).

    ``(B, in_channels, H, W) -> (B, 4 * channels, H / stride, W / stride)``. The 3x3 convolution has
    ``width = int(channels * width_per_group / 64) * groups`` channels, split into ``groups`` groups:
    ResNet uses ``groups=1, width_per_group=64`` (width = channels); ResNeXt-50 32x4d uses
    ``groups=32, width_per_group=4`` (width = 2 * channels, 32 paths of 4 channels at ``channels=64``).
    As in torchvision (and later ResNet versions), the stride sits on the 3x3 convolution, not on
    the first 1x1 convolution as in the original paper.

    Args:
        in_channels: channels of the input.
        channels: the stage's base width; the output has ``expansion * channels`` channels.
        stride: stride of the 3x3 convolution.
        shortcut: ``"A"``, ``"B"`` or ``"C"``.
        residual: False drops the shortcut.
        groups: cardinality, the number of groups of the 3x3 convolution.
        width_per_group: channels per group at the first stage (64 for ResNet, 4 for ResNeXt 32x4d).
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, shortcut: str = "B",
                 residual: bool = True, groups: int = 1, width_per_group: int = 64) -> None:
        super().__init__()
        width = int(channels * (width_per_group / 64.0)) * groups
        out_channels = channels * self.expansion
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual
        self.downsample = make_shortcut(in_channels, out_channels, stride, shortcut) if residual else None
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (B, width, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (B, width, H/s, W/s)
        out = self.bn3(self.conv3(out))  # F(x): (B, 4 * channels, H/s, W/s)
        if self.residual:
            out += x if self.downsample is None else self.downsample(x)  # in place, like torchvision
        return self.relu(out)


class ResNet(nn.Module):
    """Stem, four stages of residual blocks, global average pooling, a linear classifier.

    The ImageNet stem is a 7x7/2 convolution and a 3x3/2 max pool (224 -> 56). ``small_input=True``
    replaces it by a 3x3/1 convolution and no pooling, so 28x28 or 32x32 images keep their
    resolution in the first stage (28 -> 28 -> 14 -> 7 -> 4); everything else is unchanged.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: number of blocks in each of the four stages, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        widths: base channels of the stages; a stage outputs ``block.expansion * width`` channels.
        num_classes: number of output logits.
        in_channels: channels of the input image.
        small_input: use the 3x3/1 stem without max pooling (for 28x28 / 32x32 images).
        zero_init_residual: set the last batch-norm scale of every block to zero, so each block
            starts as the identity (torchvision's keyword; off by default).
        groups, width_per_group: ResNeXt's cardinality and per-group width (Bottleneck only).
        shortcut: ``"A"``, ``"B"`` (default) or ``"C"``.
        residual: False builds the plain network: the same layers without shortcuts.

    Raises:
        ValueError: bad configuration (wrong number of stages, unknown shortcut option).
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int],
                 widths: Sequence[int] = IMAGENET_WIDTHS, *, num_classes: int = 1000, in_channels: int = 3,
                 small_input: bool = False, zero_init_residual: bool = False, groups: int = 1,
                 width_per_group: int = 64, shortcut: str = "B", residual: bool = True) -> None:
        super().__init__()
        if len(layers) != 4 or len(widths) != 4 or min(layers) < 1 or min(widths) < 1:
            raise ValueError(f"ResNet needs four stages with at least one block and one channel each, "
                             f"got layers={tuple(layers)} and widths={tuple(widths)}.")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut option {shortcut!r}; valid options are {', '.join(SHORTCUTS)}.")
        self.in_channels = in_channels
        self.small_input = small_input
        stem_width = widths[0]
        if small_input:
            self.conv1 = conv3x3(in_channels, stem_width)  # (B, w0, H, W)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_width, 7, stride=2, padding=3, bias=False)  # H/2
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        if not small_input:
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)  # (B, w0, H/4, W/4)

        channels_in = stem_width
        block_options = dict(shortcut=shortcut, residual=residual, groups=groups,
                             width_per_group=width_per_group)
        for index, (num_blocks, width) in enumerate(zip(layers, widths)):
            stride = 1 if index == 0 else 2  # stages 2-4 halve the resolution in their first block
            blocks = [block(channels_in, width, stride, **block_options)]
            channels_in = width * block.expansion
            blocks += [block(channels_in, width, 1, **block_options) for _ in range(num_blocks - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # (B, C, 1, 1)
        self.fc = nn.Linear(channels_in, num_classes)
        self.reset_parameters(zero_init_residual)

    def reset_parameters(self, zero_init_residual: bool = False) -> None:
        """He-normal convolutions (fan-out), unit-scale batch norm; the linear layer keeps PyTorch's init."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.zeros_(module.bn3.weight)
                elif isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, H, W)`` images to ``(B, num_classes)`` logits."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ResNet expects inputs of shape (B, {self.in_channels}, H, W), got "
                             f"{tuple(x.shape)}; build the model with in_channels={x.shape[-3] if x.dim() >= 3 else '?'} "
                             "or add a batch dimension with x.unsqueeze(0).")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, w0, H/4, W/4) or (B, w0, H, W)
        x = self.layer1(x)  # (B, e*w0, ., .)
        x = self.layer2(x)  # (B, e*w1, ./2, ./2)
        x = self.layer3(x)  # (B, e*w2, ./4, ./4)
        x = self.layer4(x)  # (B, e*w3, ./8, ./8)
        x = torch.flatten(self.avgpool(x), 1)  # (B, e*w3)
        return self.fc(x)  # (B, num_classes)


def _resnet(block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int], *, num_classes: int,
            in_channels: int, small_input: bool, zero_init_residual: bool, groups: int = 1,
            width_per_group: int = 64) -> ResNet:
    return ResNet(block, layers, num_classes=num_classes, in_channels=in_channels, small_input=small_input,
                  zero_init_residual=zero_init_residual, groups=groups, width_per_group=width_per_group)


def resnet18(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
             zero_init_residual: bool = False) -> ResNet:
    """ResNet-18: BasicBlocks (2, 2, 2, 2); 11,689,512 parameters at the ImageNet configuration."""
    return _resnet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels,
                   small_input=small_input, zero_init_residual=zero_init_residual)


def resnet34(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
             zero_init_residual: bool = False) -> ResNet:
    """ResNet-34: BasicBlocks (3, 4, 6, 3); 21,797,672 parameters at the ImageNet configuration."""
    return _resnet(BasicBlock, (3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels,
                   small_input=small_input, zero_init_residual=zero_init_residual)


def resnet50(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
             zero_init_residual: bool = False) -> ResNet:
    """ResNet-50: Bottlenecks (3, 4, 6, 3); 25,557,032 parameters at the ImageNet configuration."""
    return _resnet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels,
                   small_input=small_input, zero_init_residual=zero_init_residual)


def resnet101(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
              zero_init_residual: bool = False) -> ResNet:
    """ResNet-101: Bottlenecks (3, 4, 23, 3); 44,549,160 parameters at the ImageNet configuration."""
    return _resnet(Bottleneck, (3, 4, 23, 3), num_classes=num_classes, in_channels=in_channels,
                   small_input=small_input, zero_init_residual=zero_init_residual)


def resnet152(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
              zero_init_residual: bool = False) -> ResNet:
    """ResNet-152: Bottlenecks (3, 8, 36, 3); 60,192,808 parameters at the ImageNet configuration."""
    return _resnet(Bottleneck, (3, 8, 36, 3), num_classes=num_classes, in_channels=in_channels,
                   small_input=small_input, zero_init_residual=zero_init_residual)


def resnext50_32x4d(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                    zero_init_residual: bool = False) -> ResNet:
    """ResNeXt-50 (32x4d): ResNet-50's layout with 32 groups of 4 channels in the first stage's 3x3.

    25,028,904 parameters at the ImageNet configuration.
    """
    return _resnet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels,
                   small_input=small_input, zero_init_residual=zero_init_residual, groups=32,
                   width_per_group=4)


MINI_LAYERS = (1, 1, 1, 1)
MINI_WIDTHS = (8, 16, 32, 64)


def resnet_mini(*, num_classes: int = 10, in_channels: int = 1) -> ResNet:
    """The quick profile's ResNet: ResNet-18's design at a quarter of the width with one block per stage.

    BasicBlocks ``MINI_LAYERS = (1, 1, 1, 1)`` with widths ``MINI_WIDTHS = (8, 16, 32, 64)`` and
    the small-input stem (3x3/1 convolution, no max pool): 10 layers with weights, for 28x28 or
    32x32 images.
    """
    return ResNet(BasicBlock, MINI_LAYERS, MINI_WIDTHS, num_classes=num_classes, in_channels=in_channels,
                  small_input=True)


PLAIN_LAYERS = (3, 4, 6, 3)
PLAIN_WIDTHS = (8, 16, 32, 64)


def plain_mini(*, num_classes: int = 10, in_channels: int = 1, residual: bool = False) -> ResNet:
    """The degradation experiment's network: ResNet-34's 34-layer layout at an eighth of its width.

    BasicBlocks ``PLAIN_LAYERS = (3, 4, 6, 3)``, widths ``PLAIN_WIDTHS = (8, 16, 32, 64)`` and the
    ImageNet stem (7x7/2 convolution and 3x3/2 max pool; 28x28 inputs shrink to 7x7 before the
    first stage). ``residual=False`` (default) builds the plain network without any shortcut;
    ``residual=True`` its residual twin with the same layers plus option-B shortcuts.
    """
    return ResNet(BasicBlock, PLAIN_LAYERS, PLAIN_WIDTHS, num_classes=num_classes, in_channels=in_channels,
                  residual=residual)
