"""MobileNet v1 (Howard et al., 2017) and MobileNet v2 (Sandler et al., 2018).

v1 is a plain stack of depthwise separable convolutions (a depthwise 3x3 and a pointwise 1x1, each
followed by batch normalisation and ReLU) with two global knobs: the width multiplier ``alpha``
thins every layer, the resolution multiplier ``rho`` shrinks the input. torchvision has no v1; its
parameter count and multiply-adds are checked against the paper's Tables 1 and 6.

v2 replaces the separable block by the *inverted residual with linear bottleneck*: a 1x1 expansion
by a factor ``t`` with ReLU6, a depthwise 3x3 with ReLU6, then a *linear* 1x1 projection back to a
narrow bottleneck, with a shortcut between bottlenecks when shapes allow. At default arguments it
has torchvision's module tree, parameter names, initialisation and forward, so
``mobilenet_v2().load_state_dict(torchvision.models.mobilenet_v2().state_dict())`` works.

Taught in: book/02_cnn/08_mobilenet.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# MobileNet v1 (Table 1): (output channels, depthwise stride) of the 13 separable blocks that
# follow the 3x3/stride-2 stem convolution with 32 filters.
V1_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),  # Table 1 prints s2 for the last depthwise layer, but its output is 7x7
)

# MobileNet v2 (Table 2): (expansion t, output channels c, repeats n, stride of the first repeat s).
V2_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)

# The quick-profile model: three short stages, expansion 4, after a 3x3/stride-2 stem
# (28 -> 14 -> 7 -> 4 pixels on a side).
MINI_SETTING: tuple[tuple[int, int, int, int], ...] = ((1, 16, 1, 1), (4, 24, 1, 2), (4, 48, 2, 2))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never going below ``divisor`` or
    more than 10% below ``value``: the channel rounding of MobileNet v2's reference code."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:  # rounding down removed too much: go one step up
        rounded += divisor
    return rounded


class ConvBNActivation(nn.Sequential):
    """Convolution (no bias) -> batch normalisation -> activation, with "same" padding.

    Stored as ``nn.Sequential`` so its parameters are named ``0.weight``, ``1.weight`` ... as in
    torchvision's ``Conv2dNormActivation``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, activation: type[nn.Module] = nn.ReLU6) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                      groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            activation(inplace=True),
        )


def _check_input(x: torch.Tensor, in_channels: int, name: str) -> None:
    if x.dim() != 4 or x.shape[1] != in_channels:
        given = x.shape[1] if x.dim() == 4 else "C"
        raise ValueError(f"{name} expects inputs of shape (B, {in_channels}, H, W), got "
                         f"{tuple(x.shape)}; build the model with in_channels={given} or convert the "
                         "images (e.g. x.expand(-1, 3, -1, -1) for grey images).")


def _init_weights(model: nn.Module) -> None:
    """He initialisation (fan-out) for convolutions, unit scale for batch norm, N(0, 0.01) for the
    classifier: MobileNet v2's reference scheme, used for v1 as well."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------------- v1


class DepthwiseSeparableBlock(nn.Module):
    """MobileNet v1's layer pair (Figure 3, right): 3x3 depthwise -> BN -> ReLU, 1x1 pointwise ->
    BN -> ReLU. The stride, if any, is in the depthwise convolution."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = ConvBNActivation(in_channels, in_channels, 3, stride, groups=in_channels,
                                          activation=nn.ReLU)
        self.pointwise = ConvBNActivation(in_channels, out_channels, 1, activation=nn.ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, M, H, W) -> (B, N, H / stride, W / stride)``."""
        return self.pointwise(self.depthwise(x))


class MobileNetV1(nn.Module):
    """MobileNet v1: a 3x3 stem convolution, 13 depthwise separable blocks, global average pooling
    and one fully connected layer (28 layers counting depthwise and pointwise separately).

    Args:
        num_classes: number of output logits.
        in_channels: channels of the input image.
        width_multiplier: ``alpha``; every layer has ``round(alpha * channels)`` channels.
        resolution_multiplier: ``rho``; only sets :attr:`input_size` ``= round(224 rho)`` (or 32 rho
            with ``small_input``), the side the paper feeds the network. The network itself accepts
            any input side, because it ends in global average pooling.
        blocks: ``(output channels, stride)`` of each separable block (default: Table 1).
        stem_channels: filters of the stem convolution before the width multiplier.
        small_input: stem convolution with stride 1 instead of 2, for 28x28 / 32x32 images (total
            downsampling 16 instead of 32; a 28x28 image ends as 2x2 maps).
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width_multiplier: float = 1.0,
                 resolution_multiplier: float = 1.0, blocks: Sequence[tuple[int, int]] = V1_BLOCKS,
                 stem_channels: int = 32, small_input: bool = False) -> None:
        super().__init__()
        if width_multiplier <= 0 or not 0 < resolution_multiplier <= 1:
            raise ValueError(f"need width_multiplier > 0 and 0 < resolution_multiplier <= 1, got "
                             f"{width_multiplier} and {resolution_multiplier}; the paper uses "
                             "alpha in {1, 0.75, 0.5, 0.25} and rho in {1, 6/7, 5/7, 4/7}.")
        self.in_channels = in_channels
        self.input_size = round((32 if small_input else 224) * resolution_multiplier)

        def width(channels: int) -> int:
            return max(1, round(channels * width_multiplier))

        channels = width(stem_channels)
        layers: list[nn.Module] = [ConvBNActivation(in_channels, channels, 3, 1 if small_input else 2,
                                                    activation=nn.ReLU)]  # (B, 32a, 112, 112)
        for out_channels, stride in blocks:
            layers.append(DepthwiseSeparableBlock(channels, width(out_channels), stride))
            channels = width(out_channels)
        self.features = nn.Sequential(*layers)  # (B, 1024a, 7, 7) at 224 x 224
        self.classifier = nn.Linear(channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, H, W)`` images to ``(B, num_classes)`` logits."""
        _check_input(x, self.in_channels, "MobileNetV1")
        x = self.features(x)  # (B, C, H / 32, W / 32)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (B, C)
        return self.classifier(x)  # (B, num_classes)


def mobilenet_v1(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 width_multiplier: float = 1.0, resolution_multiplier: float = 1.0) -> MobileNetV1:
    """MobileNet v1 of Howard et al. (2017); the default is "1.0 MobileNet-224" (Table 1).

    Args:
        num_classes: number of output logits.
        in_channels: channels of the input image (1 for Fashion-MNIST).
        small_input: stride-1 stem for 28x28 / 32x32 inputs (see :class:`MobileNetV1`).
        width_multiplier: ``alpha`` (the paper's Table 6 uses 1, 0.75, 0.5, 0.25).
        resolution_multiplier: ``rho``; sets ``model.input_size`` (224, 192, 160, 128 in Table 7).

    Returns:
        A freshly initialised :class:`MobileNetV1`.
    """
    return MobileNetV1(num_classes=num_classes, in_channels=in_channels, small_input=small_input,
                       width_multiplier=width_multiplier, resolution_multiplier=resolution_multiplier)


# --------------------------------------------------------------------------------------------- v2


class InvertedResidual(nn.Module):
    """MobileNet v2's bottleneck block (Table 1 of the paper), narrow -> wide -> narrow.

    ``conv`` holds, in order: a 1x1 expansion to ``t * in_channels`` channels with BN and ReLU6
    (absent when ``t = 1``), a 3x3 depthwise convolution with BN and ReLU6 (the stride lives here),
    a 1x1 *linear* projection to ``out_channels`` and its BN, with no activation. The input is added
    to the output when the stride is 1 and the channel counts agree.

    Args:
        in_channels: channels of the input bottleneck.
        out_channels: channels of the output bottleneck.
        stride: 1 or 2.
        expand_ratio: the expansion factor ``t``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}.")
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNActivation(in_channels, hidden, 1))  # expand: (B, t C_in, H, W)
        layers += [
            ConvBNActivation(hidden, hidden, 3, stride, groups=hidden),  # (B, t C_in, H/s, W/s)
            nn.Conv2d(hidden, out_channels, 1, bias=False),  # linear projection: (B, C_out, H/s, W/s)
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W) -> (B, C_out, H / stride, W / stride)``."""
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNet v2: a 3x3 stem, stages of inverted residual blocks, a 1x1 convolution to
    ``last_channel`` features, global average pooling, dropout and a linear classifier.

    Args:
        num_classes: number of output logits.
        in_channels: channels of the input image.
        width_mult: multiplies every channel count, rounded by :func:`make_divisible` to
            multiples of 8; ``last_channel`` is only ever widened, never thinned.
        inverted_residual_setting: ``(t, c, n, s)`` per stage (default: the paper's Table 2).
        stem_channels: filters of the stem convolution before ``width_mult``.
        last_channel: channels of the final 1x1 convolution before ``width_mult``.
        dropout: dropout probability before the classifier.
        small_input: for 28x28 / 32x32 images, the stem convolution and the first stage whose
            stride is 2 both use stride 1 (total downsampling 8 instead of 32; with the default
            setting a 28x28 image ends as 4x4 maps). Parameters are unchanged.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0,
                 inverted_residual_setting: Sequence[tuple[int, int, int, int]] = V2_SETTING,
                 stem_channels: int = 32, last_channel: int = 1280, dropout: float = 0.2,
                 small_input: bool = False) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}.")
        if any(len(row) != 4 for row in inverted_residual_setting):
            raise ValueError("inverted_residual_setting must list (t, c, n, s) rows, e.g. "
                             "((1, 16, 1, 1), (6, 24, 2, 2)).")
        self.in_channels = in_channels
        channels = make_divisible(stem_channels * width_mult)
        self.last_channel = make_divisible(last_channel * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNActivation(in_channels, channels, 3,
                                                    1 if small_input else 2)]  # (B, 32, 112, 112)
        first_downsampling_removed = not small_input
        for expand_ratio, out_channels, repeats, stride in inverted_residual_setting:
            if stride == 2 and not first_downsampling_removed:
                stride, first_downsampling_removed = 1, True
            out_channels = make_divisible(out_channels * width_mult)
            for repeat in range(repeats):
                layers.append(InvertedResidual(channels, out_channels, stride if repeat == 0 else 1,
                                               expand_ratio))
                channels = out_channels
        layers.append(ConvBNActivation(channels, self.last_channel, 1))  # (B, 1280, 7, 7)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, H, W)`` images to ``(B, num_classes)`` logits."""
        _check_input(x, self.in_channels, "MobileNetV2")
        x = self.features(x)  # (B, 1280, H / 32, W / 32)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (B, 1280)
        return self.classifier(x)  # (B, num_classes)


def mobilenet_v2(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 width_mult: float = 1.0) -> MobileNetV2:
    """MobileNet v2 of Sandler et al. (2018); the default equals ``torchvision.models.mobilenet_v2()``
    (3,504,872 parameters).

    Args:
        num_classes: number of output logits.
        in_channels: channels of the input image (1 for Fashion-MNIST).
        small_input: stride-1 stem and first downsampling stage for 28x28 / 32x32 inputs.
        width_mult: width multiplier with torchvision's rounding to multiples of 8.

    Returns:
        A freshly initialised :class:`MobileNetV2`.
    """
    return MobileNetV2(num_classes=num_classes, in_channels=in_channels, small_input=small_input,
                       width_mult=width_mult)


def mobilenet_mini(*, num_classes: int = 10, in_channels: int = 1) -> MobileNetV2:
    """The narrow MobileNet v2 that the quick profile trains on 28x28 Fashion-MNIST.

    A 16-filter 3x3/stride-2 stem (28 -> 14), then the four blocks of :data:`MINI_SETTING`
    (16 channels at 14x14; 24 at 7x7; 48 twice at 4x4, expansion 4), a 1x1 convolution to 192
    features and no dropout: 44,890 parameters for 10 classes. Every block is a real inverted
    residual with a linear bottleneck; only widths, depth and the stem differ from
    :func:`mobilenet_v2`. Accepts 28x28 and 32x32 inputs.

    Args:
        num_classes: number of output logits.
        in_channels: channels of the input image.

    Returns:
        A freshly initialised :class:`MobileNetV2`.
    """
    return MobileNetV2(num_classes=num_classes, in_channels=in_channels,
                       inverted_residual_setting=MINI_SETTING, stem_channels=16, last_channel=192,
                       dropout=0.0)
