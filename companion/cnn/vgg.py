"""VGG (Simonyan & Zisserman, 2014/2015): deep stacks of 3x3 convolutions, weight-compatible with torchvision.

The paper's configurations A-E differ only in depth. Every convolution is 3x3 with stride 1 and
padding 1 (configuration C also has three 1x1 convolutions); five 2x2 max-pools with stride 2 halve
the maps; three fully connected layers (4096, 4096, classes) follow, with dropout 0.5 after the
first two. ``vgg11``, ``vgg16`` and ``vgg19`` (configurations A, D and E) load
``torchvision.models.vgg11/16/19()`` state dicts with strict keys and give the same logits; with
``batch_norm=True`` they match ``vgg11_bn`` etc. (batch normalisation, which the paper predates,
after every convolution).

Initialisation follows torchvision: Kaiming-normal convolutions (fan-out), N(0, 0.01) linear weights,
zero biases. The paper drew all weights from N(0, 0.01) (copying the first layers of the trained
configuration A into the deeper ones) and noted later that Glorot initialisation works without
pre-training.

Taught in: book/02_cnn/04_vgg.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from companion.cnn.lrn import LocalResponseNorm

# Table 1 of the paper: an int is a 3x3 convolution with that many filters, (width, 1) a 1x1
# convolution, "M" a 2x2 max-pool with stride 2 and "LRN" local response normalisation.
Layer = int | tuple[int, int] | str
CONFIGS: dict[str, tuple[Layer, ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "A-LRN": (64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "C": (64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M", 512, 512, (512, 1), "M",
          512, 512, (512, 1), "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"),
}
# The quick profile's narrow network: configuration A with an eighth of the filters.
MINI_LAYERS: tuple[Layer, ...] = (8, "M", 16, "M", 32, 32, "M", 64, 64, "M", 64, 64, "M")


class VGG(nn.Module):
    """A stack of convolutions and max-pools (``features``) and three fully connected layers.

    ImageNet configuration (``small_input=False``), for ``(B, C, 224, 224)`` inputs: five 2x2 pools
    take 224 to 7; an adaptive average pool to 7x7 (a no-op at 224); FC 512*49 -> 4096 -> 4096 ->
    classes.

    ``small_input=True`` (28x28 or 32x32 inputs) changes two things: the pools round up
    (``ceil_mode=True``), so 28 survives five halvings (28 -> 14 -> 7 -> 4 -> 2 -> 1; 32 -> ... -> 1),
    and the adaptive average pool outputs 1x1, so FC6 reads 512 features instead of 25,088. The
    convolutions are unchanged.

    Args:
        layers: the feature stack, e.g. ``CONFIGS["D"]`` (see ``CONFIGS`` for the notation).
        batch_norm: batch normalisation after every convolution (torchvision's ``vgg*_bn``).
        hidden_features: width of FC6 and FC7.
        num_classes: number of output logits.
        in_channels: channels of the input image.
        small_input: the changes for 28x28 / 32x32 inputs described above.
        dropout: dropout probability after FC6 and FC7.

    Raises:
        ValueError: an entry of ``layers`` that is not a width, ``(width, 1)``, ``"M"`` or ``"LRN"``.
    """

    def __init__(self, layers: Sequence[Layer], *, batch_norm: bool = False, hidden_features: int = 4096,
                 num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.small_input = small_input
        modules: list[nn.Module] = []
        channels = in_channels
        self.num_pools = 0
        for layer in layers:
            if layer == "M":
                modules.append(nn.MaxPool2d(2, stride=2, ceil_mode=small_input))  # (B, C, H/2, W/2)
                self.num_pools += 1
            elif layer == "LRN":
                modules.append(LocalResponseNorm())
            elif isinstance(layer, int) or (isinstance(layer, tuple) and len(layer) == 2
                                            and layer[1] in (1, 3)):
                width, kernel = (layer, 3) if isinstance(layer, int) else layer
                # padding 1 keeps H and W for 3x3; 1x1 needs none
                modules.append(nn.Conv2d(channels, width, kernel, padding=kernel // 2))  # (B, width, H, W)
                if batch_norm:
                    modules.append(nn.BatchNorm2d(width))
                modules.append(nn.ReLU(inplace=True))
                channels = width
            else:
                raise ValueError(f"unknown VGG layer {layer!r}; use an int (3x3 convolution width), "
                                 "(width, 1) for a 1x1 convolution, 'M' for max pooling or 'LRN'.")
        self.features = nn.Sequential(*modules)
        grid = 1 if small_input else 7
        self.avgpool = nn.AdaptiveAvgPool2d((grid, grid))  # (B, C, grid, grid)
        self.classifier = nn.Sequential(
            nn.Linear(channels * grid * grid, hidden_features),  # FC6
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_features, hidden_features),  # FC7
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_features, num_classes),  # FC8
        )
        self._initialise()

    def _initialise(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(B, in_channels, H, W)`` to logits ``(B, num_classes)``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"VGG expects images (B, {self.in_channels}, H, W), got shape "
                             f"{tuple(x.shape)}; build it with a matching in_channels or convert the images.")
        min_size = 1 if self.small_input else 2 ** self.num_pools
        if min(x.shape[-2:]) < min_size:
            raise ValueError(f"VGG with {self.num_pools} max-pools needs inputs of at least "
                             f"{min_size}x{min_size}, got {tuple(x.shape[-2:])}; use small_input=True "
                             "for 28x28 / 32x32 images.")
        x = self.features(x)  # (B, 512, h, w)
        x = self.avgpool(x)  # (B, 512, grid, grid)
        return self.classifier(torch.flatten(x, 1))  # (B, 512 * grid * grid) -> (B, num_classes)


def vgg(config: str, *, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
        batch_norm: bool = False) -> VGG:
    """VGG in one of the paper's configurations ``"A"``, ``"A-LRN"``, ``"B"``, ``"C"``, ``"D"``, ``"E"``.

    Raises:
        ValueError: an unknown configuration name.
    """
    if config not in CONFIGS:
        raise ValueError(f"unknown VGG configuration {config!r}; valid ones are {', '.join(CONFIGS)} "
                         "(A = VGG-11, B = VGG-13, D = VGG-16, E = VGG-19).")
    return VGG(CONFIGS[config], batch_norm=batch_norm, num_classes=num_classes,
               in_channels=in_channels, small_input=small_input)


def vgg11(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
          batch_norm: bool = False) -> VGG:
    """VGG-11 (configuration A); defaults equal ``torchvision.models.vgg11()`` (``vgg11_bn`` with
    ``batch_norm=True``). Arguments as in :class:`VGG`."""
    return vgg("A", num_classes=num_classes, in_channels=in_channels, small_input=small_input,
               batch_norm=batch_norm)


def vgg16(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
          batch_norm: bool = False) -> VGG:
    """VGG-16 (configuration D); defaults equal ``torchvision.models.vgg16()`` (``vgg16_bn`` with
    ``batch_norm=True``). Arguments as in :class:`VGG`."""
    return vgg("D", num_classes=num_classes, in_channels=in_channels, small_input=small_input,
               batch_norm=batch_norm)


def vgg19(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
          batch_norm: bool = False) -> VGG:
    """VGG-19 (configuration E); defaults equal ``torchvision.models.vgg19()`` (``vgg19_bn`` with
    ``batch_norm=True``). Arguments as in :class:`VGG`."""
    return vgg("E", num_classes=num_classes, in_channels=in_channels, small_input=small_input,
               batch_norm=batch_norm)


def vgg_mini(*, num_classes: int = 10, in_channels: int = 1) -> VGG:
    """The narrow VGG the quick profile trains on Fashion-MNIST (28x28 or 32x32 inputs).

    Configuration A (VGG-11) with an eighth of the filters (``MINI_LAYERS``), batch normalisation,
    the small-input changes and 256-unit hidden layers.
    """
    return VGG(MINI_LAYERS, batch_norm=True, hidden_features=256, num_classes=num_classes,
               in_channels=in_channels, small_input=True)
