"""DenseNet (Huang, Liu, van der Maaten & Weinberger, 2017): every layer reads all earlier feature maps.

Inside a dense block, layer ``l`` receives the concatenation of the block input and the outputs of all
``l - 1`` layers before it, ``x_l = H_l([x_0, x_1, ..., x_{l-1}])``, and adds ``growth_rate`` (the
paper's ``k``) new maps to that running stack. ``H_l`` is the paper's DenseNet-B composite function:
BN-ReLU-Conv(1x1) down to ``bn_size * k`` maps (the bottleneck), then BN-ReLU-Conv(3x3) to ``k`` maps.
Between blocks a transition layer (BN-ReLU-Conv(1x1)-AvgPool(2x2)) halves the resolution and, with
compression ``theta = 0.5`` (DenseNet-BC), halves the number of maps.

The module tree and parameter names follow torchvision's ``densenet121`` (``features.conv0``,
``features.denseblock1.denselayer1.norm1``, ``features.transition1.conv``, ``features.norm5``,
``classifier``), so ``densenet121().load_state_dict(torchvision.models.densenet121().state_dict())``
works and both give the same logits.

Taught in: book/02_cnn/07_densenet.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as checkpoint
from torch import nn

# (growth_rate k, layers per dense block, channels of the stem) of the paper's ImageNet models
# (Table 1); DenseNet-161 (k = 48) is the wider model of the paper's Table 3 and of torchvision.
CONFIGS: dict[str, tuple[int, tuple[int, ...], int]] = {
    "densenet121": (32, (6, 12, 24, 16), 64),
    "densenet161": (48, (6, 12, 36, 24), 96),
    "densenet169": (32, (6, 12, 32, 32), 64),
    "densenet201": (32, (6, 12, 48, 32), 64),
}


class DenseLayer(nn.Module):
    """One composite function ``H_l`` of DenseNet-B: BN-ReLU-Conv1x1 (bottleneck), BN-ReLU-Conv3x3.

    Args:
        in_channels: maps in the concatenated input, ``k_0 + (l - 1) k`` for the ``l``-th layer.
        growth_rate: maps this layer adds (the paper's ``k``).
        bn_size: the bottleneck produces ``bn_size * growth_rate`` maps (the paper uses 4).
        drop_rate: dropout probability on the new maps (0: no dropout, as on ImageNet).
        memory_efficient: recompute the concatenation and the bottleneck during the backward pass
            instead of storing them (gradient checkpointing); same gradients, less memory.
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int = 4,
                 drop_rate: float = 0.0, memory_efficient: bool = False) -> None:
        super().__init__()
        bottleneck = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, bottleneck, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bottleneck)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bottleneck, growth_rate, kernel_size=3, padding=1, bias=False)
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient

    def bottleneck(self, *features: torch.Tensor) -> torch.Tensor:
        """Concatenate earlier maps, apply BN-ReLU-Conv1x1: ``(B, C_in, H, W) -> (B, 4k, H, W)``."""
        stacked = torch.cat(features, dim=1)  # (B, k_0 + (l-1) k, H, W)
        return self.conv1(self.relu1(self.norm1(stacked)))  # (B, bn_size * k, H, W)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Map the list of all earlier feature maps ``[(B, C_i, H, W), ...]`` to ``(B, k, H, W)``."""
        if self.memory_efficient and self.training and any(f.requires_grad for f in features):
            # the concatenation and the bottleneck output are recomputed in the backward pass
            hidden = checkpoint.checkpoint(self.bottleneck, *features, use_reentrant=False)
        else:
            hidden = self.bottleneck(*features)
        new = self.conv2(self.relu2(self.norm2(hidden)))  # (B, k, H, W)
        if self.drop_rate > 0:
            new = F.dropout(new, p=self.drop_rate, training=self.training)
        return new


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; the output stacks the input and every layer's ``k`` new maps.

    Args:
        num_layers: dense layers in the block.
        in_channels: maps entering the block (the paper's ``k_0``).
        growth_rate, bn_size, drop_rate, memory_efficient: as in :class:`DenseLayer`.
    """

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int = 4,
                 drop_rate: float = 0.0, memory_efficient: bool = False) -> None:
        super().__init__()
        for index in range(num_layers):
            layer = DenseLayer(in_channels + index * growth_rate, growth_rate, bn_size=bn_size,
                               drop_rate=drop_rate, memory_efficient=memory_efficient)
            self.add_module(f"denselayer{index + 1}", layer)
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, k_0, H, W)`` to ``(B, k_0 + num_layers * k, H, W)``."""
        features = [x]
        for layer in self.values():
            features.append(layer(features))  # each layer reads all maps so far, adds (B, k, H, W)
        return torch.cat(features, dim=1)  # (B, k_0 + L k, H, W)


class Transition(nn.Sequential):
    """BN-ReLU-Conv1x1-AvgPool2x2 between dense blocks: ``(B, C, H, W) -> (B, C', H/2, W/2)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """DenseNet-BC: a stem, dense blocks joined by compressing transitions, BN-ReLU, pooling, linear.

    ImageNet stem (default): Conv7x7/2 to ``num_init_features`` maps, BN, ReLU, MaxPool3x3/2, so a
    224x224 image reaches the first block at 56x56. ``small_input=True`` replaces it by a Conv3x3/1
    (padding 1) to ``num_init_features`` maps, BN and ReLU with no max pooling, so 28x28 or 32x32 images
    reach the first block at full resolution; nothing else changes (the stem convolution keeps its
    name ``features.conv0``).

    Args:
        growth_rate: maps each dense layer adds (``k``).
        block_config: dense layers in each block, e.g. ``(6, 12, 24, 16)`` for DenseNet-121.
        num_init_features: maps produced by the stem (the paper uses ``2k``).
        bn_size: bottleneck width as a multiple of ``k`` (4 in the paper).
        compression: the transition keeps ``floor(compression * C)`` of its ``C`` input maps.
        drop_rate: dropout after each dense layer.
        num_classes: number of output logits.
        in_channels: channels of the input image.
        small_input: use the 3x3 stride-1 stem for 28x28 / 32x32 images (see above).
        memory_efficient: gradient checkpointing of each layer's concatenation and bottleneck.
        stem_stride: stride of the small-input stem: 1 keeps the input's resolution, 2 halves it
            (four times less arithmetic in the first block). Ignored by the ImageNet stem.

    Raises:
        ValueError: an empty ``block_config``, a non-positive width, or a compression outside (0, 1].
    """

    def __init__(self, growth_rate: int = 32, block_config: Sequence[int] = (6, 12, 24, 16),
                 num_init_features: int = 64, bn_size: int = 4, compression: float = 0.5,
                 drop_rate: float = 0.0, num_classes: int = 1000, in_channels: int = 3,
                 small_input: bool = False, memory_efficient: bool = False, stem_stride: int = 1) -> None:
        super().__init__()
        if len(block_config) == 0 or min(block_config) < 1:
            raise ValueError(f"block_config={tuple(block_config)} must list at least one block, each "
                             "with at least one dense layer, e.g. (6, 12, 24, 16).")
        if min(growth_rate, num_init_features, bn_size, in_channels, num_classes) < 1:
            raise ValueError("growth_rate, num_init_features, bn_size, in_channels and num_classes "
                             "must all be positive integers.")
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride={stem_stride} must be 1 or 2 (it applies to the small-input stem only).")
        if not 0 < compression <= 1:
            raise ValueError(f"compression={compression} must be in (0, 1]; the paper's DenseNet-BC "
                             "uses 0.5 and plain DenseNet 1.")
        self.in_channels = in_channels
        self.small_input = small_input
        self.features = nn.Sequential()
        if small_input:
            self.features.add_module("conv0", nn.Conv2d(in_channels, num_init_features, 3, stride=stem_stride,
                                                        padding=1, bias=False))  # (B, k0, H/s, W/s)
        else:
            self.features.add_module("conv0", nn.Conv2d(in_channels, num_init_features, 7, stride=2,
                                                        padding=3, bias=False))  # (B, k0, H/2, W/2)
        self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        if not small_input:
            self.features.add_module("pool0", nn.MaxPool2d(3, stride=2, padding=1))  # (B, k0, H/4, W/4)

        channels = num_init_features
        for index, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size=bn_size,
                               drop_rate=drop_rate, memory_efficient=memory_efficient)
            self.features.add_module(f"denseblock{index + 1}", block)
            channels = block.out_channels  # + num_layers * k
            if index != len(block_config) - 1:
                compressed = int(compression * channels)  # floor(theta * C)
                self.features.add_module(f"transition{index + 1}", Transition(channels, compressed))
                channels = compressed  # and the resolution halves
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)
        self.num_features = channels
        # smallest side that survives the pooling: the stem's factor 4 and one halving per transition
        self.min_input_size = (stem_stride if small_input else 4) * 2 ** (len(block_config) - 1)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)  # He et al. (2015), gain sqrt(2), fan_in
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, H, W)`` images to ``(B, num_classes)`` logits."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            fix = (f"build the model with in_channels={x.shape[1]} or convert the images"
                   if x.dim() == 4 else "add a batch dimension, e.g. x.unsqueeze(0)")
            raise ValueError(f"DenseNet expects inputs of shape (B, {self.in_channels}, H, W), got "
                             f"{tuple(x.shape)}; {fix}.")
        if min(x.shape[-2:]) < self.min_input_size:
            hint = ("" if self.small_input else
                    "; for 28x28 or 32x32 images build the model with small_input=True")
            raise ValueError(f"input of {x.shape[-2]}x{x.shape[-1]} pixels is smaller than the "
                             f"{self.min_input_size}x{self.min_input_size} this DenseNet's pooling "
                             f"needs{hint}.")
        x = self.features(x)  # (B, C, H', W'), ends with the final batch norm
        x = F.relu(x)
        x = F.adaptive_avg_pool2d(x, 1)  # (B, C, 1, 1)
        return self.classifier(torch.flatten(x, 1))  # (B, C) -> (B, num_classes)


def input_channels_per_layer(growth_rate: int, block_config: Sequence[int],
                             num_init_features: int, compression: float = 0.5) -> list[list[int]]:
    """Maps each dense layer reads, block by block: ``k_0 + (l - 1) k`` for layer ``l`` of a block.

    Args:
        growth_rate, block_config, num_init_features, compression: as in :class:`DenseNet`.

    Returns:
        One list per block with the input channels of each of its layers.
    """
    channels, per_block = num_init_features, []
    for block_index, num_layers in enumerate(block_config):
        per_block.append([channels + index * growth_rate for index in range(num_layers)])
        channels += num_layers * growth_rate
        if block_index != len(block_config) - 1:
            channels = int(compression * channels)
    return per_block


def _densenet(name: str, num_classes: int, in_channels: int, small_input: bool,
              memory_efficient: bool) -> DenseNet:
    growth_rate, block_config, num_init_features = CONFIGS[name]
    return DenseNet(growth_rate, block_config, num_init_features, num_classes=num_classes,
                    in_channels=in_channels, small_input=small_input,
                    memory_efficient=memory_efficient)


def densenet121(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                memory_efficient: bool = False) -> DenseNet:
    """DenseNet-121 (k = 32, blocks of 6, 12, 24, 16 layers): 7,978,856 parameters at 1000 classes.

    Same module tree, names and forward as ``torchvision.models.densenet121``.
    """
    return _densenet("densenet121", num_classes, in_channels, small_input, memory_efficient)


def densenet161(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                memory_efficient: bool = False) -> DenseNet:
    """DenseNet-161 (k = 48, blocks of 6, 12, 36, 24 layers, 96-map stem), as torchvision's."""
    return _densenet("densenet161", num_classes, in_channels, small_input, memory_efficient)


def densenet169(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                memory_efficient: bool = False) -> DenseNet:
    """DenseNet-169 (k = 32, blocks of 6, 12, 32, 32 layers), as torchvision's."""
    return _densenet("densenet169", num_classes, in_channels, small_input, memory_efficient)


def densenet201(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                memory_efficient: bool = False) -> DenseNet:
    """DenseNet-201 (k = 32, blocks of 6, 12, 48, 32 layers), as torchvision's."""
    return _densenet("densenet201", num_classes, in_channels, small_input, memory_efficient)


def densenet_mini(*, num_classes: int = 10, in_channels: int = 1) -> DenseNet:
    """The narrow DenseNet-BC the quick profile trains on 28x28 Fashion-MNIST.

    Growth rate ``k = 12`` (the smallest of the paper's CIFAR models), three dense blocks of 3 layers,
    a 24-map (``2k``, as in the paper's CIFAR DenseNet-BC) 3x3 stem with stride 2, bottleneck ``4k``,
    compression 0.5: a 28x28 image meets the blocks at 14x14, 7x7 and 3x3. The stride-2 stem keeps
    the concatenation-heavy first block cheap enough for a CPU.

    Args:
        num_classes: number of output logits.
        in_channels: channels of the input image.

    Returns:
        A freshly initialised :class:`DenseNet` with ``small_input=True``.
    """
    return DenseNet(growth_rate=12, block_config=(3, 3, 3), num_init_features=24,
                    num_classes=num_classes, in_channels=in_channels, small_input=True, stem_stride=2)
