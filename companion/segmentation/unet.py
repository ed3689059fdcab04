"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015): a contracting path, an expanding path, skips.

The contracting path repeats two 3x3 convolutions (ReLU) and a 2x2 max-pool, doubling the channels
after every pool (64, 128, 256, 512, 1024 in the paper: four pools). The expanding path repeats a
2x2 "up-convolution" that halves the channels and doubles the size, a concatenation with the
feature map of the same level from the contracting path (the skip), and two 3x3 convolutions. A 1x1
convolution maps the last 64 channels to the classes. The paper's network has about 31 million
parameters.

The paper's convolutions are unpadded ("valid"): every 3x3 convolution removes a one-pixel border, a
572x572 input gives a 388x388 output, and each skip is centre-cropped to the smaller decoder map
before the concatenation. Large images are segmented tile by tile with overlapping inputs (the
overlap-tile strategy, with the missing context mirrored at the image border), so the outputs tile
seamlessly. ``padding="valid"`` builds that network (its output is smaller than its input, which
breaks this package's at-input-size convention: use it to study the paper). The default
``padding="same"`` pads every convolution by 1, so skips and decoder maps have the same size (the pools
round odd sizes up and the decoder drops the extra row or column) and the logits come out at the input's size; most modern
implementations do this. Batch normalisation (default on) postdates the paper. The paper also puts
drop-out layers at the end of the contracting path (as implicit data augmentation); ``UNet`` has none.
With ``padding="valid"`` every 2x2 pool must see an even map, as the paper requires for seamless
tiles (572 is such a size); other sizes are an error that names the nearest valid ones.

``stem_stride=2`` is our change for CPU budgets: a strided 3x3 convolution first halves the
resolution, the U-Net runs at half resolution, and its logits are upsampled bilinearly by 2 at the
end. It costs a quarter of the compute per convolution at every level.

Taught in: book/04_segmentation/03_unet.ipynb.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

PADDINGS = ("same", "valid")


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by (batch norm and) ReLU: ``(B, in, H, W) -> (B, out, H', W')``.

    ``H' = H`` with ``padding="same"``, ``H - 4`` with ``"valid"``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, padding: str = "same", batch_norm: bool = True) -> None:
        pad = 1 if padding == "same" else 0
        layers: list[nn.Module] = []
        for channels in (in_channels, out_channels):
            layers.append(nn.Conv2d(channels, out_channels, 3, padding=pad, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The central ``size = (h, w)`` window of ``x (B, C, H, W)`` (the paper's crop of the skips)."""
    top, left = (x.shape[-2] - size[0]) // 2, (x.shape[-1] - size[1]) // 2
    if top < 0 or left < 0:
        raise ValueError(f"cannot crop a {tuple(x.shape[-2:])} map to {tuple(size)}; it is smaller.")
    return x[..., top:top + size[0], left:left + size[1]]  # (B, C, h, w)


class Up(nn.Module):
    """One level of the expanding path: up-convolution, concatenation with the skip, DoubleConv.

    ``(B, in, h, w)`` and skip ``(B, in/2, H, W)`` -> ``(B, out, H', W')``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, padding: str = "same", batch_norm: bool = True) -> None:
        super().__init__()
        self.padding = padding
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)  # (B, in/2, 2h, 2w)
        self.conv = DoubleConv(in_channels // 2 + in_channels // 2, out_channels, padding=padding,
                               batch_norm=batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # (B, in/2, 2h, 2w)
        if self.padding == "valid":
            skip = center_crop(skip, (x.shape[-2], x.shape[-1]))  # the paper: crop the larger skip
        else:
            # The pool rounded an odd size up: drop the extra bottom row / right column.
            x = x[..., :skip.shape[-2], :skip.shape[-1]]  # (B, in/2, H, W)
        return self.conv(torch.cat([skip, x], dim=1))  # (B, in, H, W) -> (B, out, H', W')


class UNet(nn.Module):
    """U-Net with ``depth`` pools; channels ``base_channels * 2**level``.

    Shapes for ``padding="same"``, ``stem_stride=1`` and input ``(B, in_channels, H, W)``: level ``l``
    of the contracting path is ``(B, base * 2**l, H / 2**l, W / 2**l)`` (rounded up), the bottleneck
    ``(B, base * 2**depth, H / 2**depth, W / 2**depth)``, the expanding path mirrors it and the
    logits are ``(B, num_classes, H, W)``.

    Args:
        num_classes: classes including the background.
        in_channels: channels of the input image.
        base_channels: filters of the first level (64 in the paper).
        depth: number of pools (4 in the paper).
        padding: ``"same"`` (output at the input's size) or ``"valid"`` (the paper's unpadded
            convolutions; the output is smaller, see the module docstring).
        batch_norm: batch normalisation after every convolution.
        stem_stride: 1 (the paper) or 2 (a strided stem convolution halves the resolution; the
            logits are upsampled bilinearly to the input's size).
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, base_channels: int = 64, depth: int = 4,
                 padding: str = "same", batch_norm: bool = True, stem_stride: int = 1) -> None:
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}.")
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}.")
        if padding == "valid" and stem_stride != 1:
            raise ValueError("padding='valid' is the paper's network; use it with stem_stride=1.")
        if depth < 1 or base_channels < 1:
            raise ValueError(f"depth and base_channels must be positive, got {depth} and {base_channels}.")
        self.in_channels, self.num_classes, self.depth = in_channels, num_classes, depth
        self.padding, self.stem_stride = padding, stem_stride
        widths = [base_channels * 2 ** level for level in range(depth + 1)]
        if stem_stride == 2:
            stem_layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 3, stride=2, padding=1,
                                                      bias=not batch_norm)]  # (B, base, H/2, W/2)
            if batch_norm:
                stem_layers.append(nn.BatchNorm2d(base_channels))
            self.stem = nn.Sequential(*stem_layers, nn.ReLU(inplace=True))
            first_in = base_channels
        else:
            self.stem = nn.Identity()
            first_in = in_channels
        self.down = nn.ModuleList([DoubleConv(first_in, widths[0], padding=padding, batch_norm=batch_norm)])
        for level in range(1, depth + 1):
            self.down.append(DoubleConv(widths[level - 1], widths[level], padding=padding, batch_norm=batch_norm))
        # "same" rounds odd sizes up (every input size works); the paper's "valid" floors.
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=padding == "same")
        self.up = nn.ModuleList([Up(widths[level], widths[level - 1], padding=padding, batch_norm=batch_norm)
                                 for level in range(depth, 0, -1)])
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)  # (B, K, H, W)

    def _valid_sizes_around(self, side: int) -> tuple[int | None, int]:
        """The nearest sides below and above ``side`` that a ``padding="valid"`` network accepts."""
        below = next((s for s in range(side, 0, -1) if _valid_side(self, s)), None)
        above = next(s for s in itertools.count(side) if _valid_side(self, s))  # valid sides recur every 2**depth
        return below, above

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(B, in_channels, H, W)`` to logits ``(B, num_classes, H, W)`` (smaller with "valid")."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects images (B, {self.in_channels}, H, W), got {tuple(x.shape)}.")
        size = x.shape[-2:]
        x = self.stem(x)  # (B, base, H/2, W/2) with stem_stride=2, else unchanged
        skips = []
        for level, block in enumerate(self.down):
            if level > 0:
                if self.padding == "valid" and (x.shape[-2] % 2 or x.shape[-1] % 2):
                    below, above = self._valid_sizes_around(int(size[0]) if x.shape[-2] % 2 else int(size[1]))
                    raise ValueError(f"with padding='valid' every 2x2 pool needs an even map (the paper picks "
                                     f"its tile size so, e.g. 572), but pool {level} of this "
                                     f"{tuple(size)} input sees {tuple(x.shape[-2:])}; use input sides such "
                                     f"as {above if below is None else f'{below} or {above}'}.")
                skips.append(x)
                x = self.pool(x)  # (B, C, h/2, w/2)
            x = block(x)  # (B, base * 2**level, h, w)
        for block in self.up:
            x = block(x, skips.pop())  # (B, C/2, 2h, 2w)
        logits = self.classifier(x)  # (B, K, h, w)
        if self.stem_stride == 2:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)  # (B, K, H, W)
        return logits


def _valid_side(model: UNet, side: int) -> bool:
    """Whether ``side`` reaches every pool of a ``padding="valid"`` U-Net with an even size."""
    for _ in range(model.depth):
        side -= 4  # two unpadded 3x3 convolutions
        if side < 2 or side % 2:
            return False
        side //= 2
    side -= 4  # the bottom's two convolutions
    for _ in range(model.depth):
        if side < 1:
            return False
        side = 2 * side - 4  # up-convolution, then two unpadded convolutions
    return side >= 1


def unet_paper(*, num_classes: int = 2, in_channels: int = 1, padding: str = "valid") -> UNet:
    """The paper's U-Net: 64 base channels, four pools, no batch norm, unpadded convolutions."""
    return UNet(num_classes=num_classes, in_channels=in_channels, base_channels=64, depth=4, padding=padding,
                batch_norm=False)


def unet_mini(num_classes: int, *, in_channels: int = 3) -> UNet:
    """The quick profile's U-Net: strided stem (half resolution), 16 base channels, three pools, batch norm."""
    return UNet(num_classes=num_classes, in_channels=in_channels, base_channels=16, depth=3, stem_stride=2)
