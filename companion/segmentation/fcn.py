"""FCN (Long, Shelhamer & Darrell, CVPR 2015): a classification network turned fully convolutional.

The paper takes an ImageNet classifier (VGG16 in its best results), replaces the fully connected
layers by convolutions (FC6 becomes a 7x7 convolution with 4096 filters, FC7 a 1x1 convolution) so
the network accepts any input size and returns a coarse map of class scores (stride 32), and
upsamples that map back to the input with transposed convolutions initialised to bilinear
interpolation: the intermediate x2 upsamplings are then learned, the final one stays fixed (Sec. 4.3
of the paper; ``learn_final_upsampling=True`` learns it too). Skip connections add finer
predictions:

- FCN-32s: score the stride-32 features with a 1x1 convolution, upsample by 32.
- FCN-16s: upsample those scores by 2, add a 1x1 score of pool4 (stride 16), upsample by 16.
- FCN-8s: once more by 2, add a 1x1 score of pool3 (stride 8), upsample by 8.

What we change, and why. The paper pads the first convolution by 100 pixels (so that tiny inputs
survive FC6's 7x7 window without padding) and crops the upsampled map back to the input with
computed offsets. Here every convolution keeps the size ("same" padding, FC6 included), the pools
round up (``ceil_mode=True``), so a stride-``s`` map has ``ceil(H / s)`` rows, and every
transposed convolution upsamples by exactly ``s`` (kernel ``2s``, stride ``s``, padding ``s / 2``);
the result is at least the target size and a top-left crop aligns it (the same pixel geometry as
``F.interpolate(mode="bilinear", align_corners=False)``). Batch normalisation (optional, on for the
mini model) postdates the paper.

torchvision's ``fcn_resnet50`` is a different network with the same name: a ResNet-50 whose last two
stages use dilated convolutions (output stride 8), an ``FCNHead`` (3x3 convolution to 512 channels,
batch norm, ReLU, dropout, 1x1 classifier) and one bilinear ``F.interpolate`` to the input size; no
skip connections and no transposed convolutions.

Taught in: book/04_segmentation/02_fcn.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from companion.cnn.vgg import CONFIGS, VGG, Layer

VARIANTS = ("32s", "16s", "8s")
# The quick profile's trunk: one convolution per stage (VGG's layout, far fewer filters), five pools.
MINI_LAYERS: tuple[Layer, ...] = (16, "M", 32, "M", 64, "M", 96, "M", 128, "M")


def bilinear_kernel(in_channels: int, out_channels: int, size: int) -> torch.Tensor:
    """Weights of a ``ConvTranspose2d`` that performs bilinear upsampling channel by channel.

    The 1-D filter is a triangle ``1 - |x - center| / factor`` with ``factor = ceil(size / 2)``; the
    2-D filter is the outer product of two of them. Channel ``c`` is upsampled into channel ``c``
    (for ``c < min(in_channels, out_channels)``); all other weights are zero. With
    ``size = 2 * stride`` and ``padding = stride // 2`` (even ``stride``) the transposed convolution
    equals ``F.interpolate(scale_factor=stride, mode="bilinear", align_corners=False)`` away from the
    border (the border differs: the transposed convolution sees zeros outside the image, interpolate
    repeats the edge).

    Args:
        in_channels: input channels of the transposed convolution.
        out_channels: its output channels.
        size: the kernel size.

    Returns:
        ``(in_channels, out_channels, size, size)`` float32, the layout of ``ConvTranspose2d.weight``.
    """
    if size < 1 or in_channels < 1 or out_channels < 1:
        raise ValueError(f"bilinear_kernel needs positive sizes, got in_channels={in_channels}, "
                         f"out_channels={out_channels}, size={size}.")
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    positions = torch.arange(size, dtype=torch.float32)  # (size,)
    triangle = 1 - (positions - center).abs() / factor  # (size,)
    filter_2d = triangle[:, None] * triangle[None, :]  # (size, size)
    weight = torch.zeros(in_channels, out_channels, size, size)
    channels = torch.arange(min(in_channels, out_channels))
    weight[channels, channels] = filter_2d
    return weight


def bilinear_upsampling(channels: int, stride: int) -> nn.ConvTranspose2d:
    """A learnable ``ConvTranspose2d`` that upsamples by exactly ``stride``, initialised to bilinear.

    Kernel ``2 * stride``, padding ``stride // 2``: ``(B, C, h, w) -> (B, C, stride * h, stride * w)``.
    No bias (the paper's upsampling layers have none).
    """
    if stride < 2 or stride % 2:
        raise ValueError(f"stride must be an even number >= 2, got {stride}.")
    layer = nn.ConvTranspose2d(channels, channels, 2 * stride, stride=stride, padding=stride // 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(bilinear_kernel(channels, channels, 2 * stride))
    return layer


def crop_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Top-left crop of ``x (B, C, H, W)`` to ``size = (h, w)`` with ``h <= H`` and ``w <= W``."""
    height, width = int(size[0]), int(size[1])
    if x.shape[-2] < height or x.shape[-1] < width:
        raise ValueError(f"cannot crop a {tuple(x.shape[-2:])} map to {(height, width)}; it is smaller.")
    return x[..., :height, :width]  # (B, C, h, w)


class FCN(nn.Module):
    """Fully convolutional network: a VGG trunk, convolutionalised FC6/FC7, score layers, skips.

    Shapes for an input ``(B, in_channels, H, W)`` (``ceil`` divisions):

    - ``pool3`` ``(B, C3, H/8, W/8)``, ``pool4`` ``(B, C4, H/16, W/16)``, ``pool5`` ``(B, C5, H/32, W/32)``
    - ``fc6``/``fc7`` ``(B, head_channels, H/32, W/32)`` -> ``score_fr`` ``(B, num_classes, H/32, W/32)``
    - FCN-8s: ``upscore2`` x2 + ``score_pool4`` -> ``upscore_pool4`` x2 + ``score_pool3`` ->
      ``upscore8`` x8, cropped to ``(B, num_classes, H, W)``.

    Args:
        layers: the trunk in ``companion.cnn.vgg`` notation (e.g. ``CONFIGS["D"]`` for VGG16); it
            must contain exactly five ``"M"`` pools (pool3, pool4, pool5 are the last three).
        num_classes: classes including the background.
        in_channels: channels of the input image.
        variant: ``"32s"``, ``"16s"`` or ``"8s"``.
        head_channels: width of FC6 and FC7 (4096 in the paper).
        fc6_kernel: kernel of FC6 as a convolution (7 in the paper).
        batch_norm: batch normalisation after every convolution of the trunk and the head.
        dropout: dropout after FC6 and FC7 (0.5 in the paper).
        learn_final_upsampling: False (the paper): the last upsampling (``upscore32``, ``upscore16``
            or ``upscore8``) stays bilinear, its weight has ``requires_grad=False``; True learns it
            like the intermediate x2 upsamplings, which are always learned.
    """

    def __init__(self, layers: Sequence[Layer], *, num_classes: int, in_channels: int = 3, variant: str = "8s",
                 head_channels: int = 4096, fc6_kernel: int = 7, batch_norm: bool = False,
                 dropout: float = 0.5, learn_final_upsampling: bool = False) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}.")
        if list(layers).count("M") != 5:
            raise ValueError(f"the FCN trunk needs exactly five 'M' pools (strides 2..32), got "
                             f"{list(layers).count('M')}; use a VGG configuration such as CONFIGS['D'].")
        if fc6_kernel % 2 != 1:
            raise ValueError(f"fc6_kernel must be odd (same padding), got {fc6_kernel}.")
        self.variant, self.in_channels, self.num_classes = variant, in_channels, num_classes
        # Reuse the VGG feature stack; round the pools up so odd sizes keep their last row/column.
        if list(layers)[-1] != "M":
            raise ValueError(f"the FCN trunk must end with its fifth 'M' pool (FC6 follows it), got {list(layers)[-1]!r} "
                             "last.")
        # hidden_features=1: only VGG's feature stack is kept, so do not build its 103M-weight FC6
        features = VGG(layers, batch_norm=batch_norm, num_classes=1, in_channels=in_channels,
                       hidden_features=1).features
        stages: list[list[nn.Module]] = [[]]
        widths: list[int] = []
        width = in_channels
        for module in features:
            if isinstance(module, nn.MaxPool2d):
                stages[-1].append(nn.MaxPool2d(2, stride=2, ceil_mode=True))  # (B, C, ceil(H/2), ceil(W/2))
                widths.append(width)
                stages.append([])
            else:
                if isinstance(module, nn.Conv2d):
                    width = module.out_channels
                stages[-1].append(module)
        # Five stages, each ending with its pool: pool1/2 (stride 4), pool3 (8), pool4 (16), pool5 (32).
        self.to_pool3 = nn.Sequential(*stages[0], *stages[1], *stages[2])
        self.to_pool4 = nn.Sequential(*stages[3])
        self.to_pool5 = nn.Sequential(*stages[4])
        pool3_channels, pool4_channels, pool5_channels = widths[2], widths[3], widths[4]

        def conv_block(in_ch: int, out_ch: int, kernel: int) -> list[nn.Module]:
            block: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=not batch_norm)]
            if batch_norm:
                block.append(nn.BatchNorm2d(out_ch))
            return block + [nn.ReLU(inplace=True), nn.Dropout(dropout)]  # element-wise, as Caffe's Dropout

        self.fc6 = nn.Sequential(*conv_block(pool5_channels, head_channels, fc6_kernel))
        self.fc7 = nn.Sequential(*conv_block(head_channels, head_channels, 1))
        self.score_fr = nn.Conv2d(head_channels, num_classes, 1)  # (B, K, H/32, W/32)
        if variant == "32s":
            self.upscore32 = bilinear_upsampling(num_classes, 32)
        else:
            self.score_pool4 = nn.Conv2d(pool4_channels, num_classes, 1)
            self.upscore2 = bilinear_upsampling(num_classes, 2)
            if variant == "16s":
                self.upscore16 = bilinear_upsampling(num_classes, 16)
            else:
                self.score_pool3 = nn.Conv2d(pool3_channels, num_classes, 1)
                self.upscore_pool4 = bilinear_upsampling(num_classes, 2)
                self.upscore8 = bilinear_upsampling(num_classes, 8)
        # The paper fixes the final upsampling to bilinear interpolation and learns the x2 ones.
        self.final_upsampling.weight.requires_grad_(learn_final_upsampling)
        # The paper initialises the skips' score layers to zero: at the start a skip adds nothing and
        # FCN-16s/8s behave like the coarser net they are fine-tuned from. (It zeroes score_fr too,
        # on a pretrained trunk; trained from scratch, score_fr keeps PyTorch's random default so
        # the trunk receives a gradient from the first step.)
        for name in ("score_pool4", "score_pool3"):
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name).weight)
                nn.init.zeros_(getattr(self, name).bias)

    @property
    def final_upsampling(self) -> nn.ConvTranspose2d:
        """The last transposed convolution (x32, x16 or x8 by variant); fixed bilinear unless learned."""
        return getattr(self, {"32s": "upscore32", "16s": "upscore16", "8s": "upscore8"}[self.variant])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(B, in_channels, H, W)`` to logits ``(B, num_classes, H, W)``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"FCN expects images (B, {self.in_channels}, H, W), got {tuple(x.shape)}.")
        size = x.shape[-2:]
        pool3 = self.to_pool3(x)  # (B, C3, H/8, W/8)
        pool4 = self.to_pool4(pool3)  # (B, C4, H/16, W/16)
        pool5 = self.to_pool5(pool4)  # (B, C5, H/32, W/32)
        score = self.score_fr(self.fc7(self.fc6(pool5)))  # (B, K, H/32, W/32)
        if self.variant == "32s":
            return crop_to(self.upscore32(score), size)  # (B, K, H, W)
        score4 = self.score_pool4(pool4)  # (B, K, H/16, W/16)
        score = crop_to(self.upscore2(score), score4.shape[-2:]) + score4  # (B, K, H/16, W/16)
        if self.variant == "16s":
            return crop_to(self.upscore16(score), size)  # (B, K, H, W)
        score3 = self.score_pool3(pool3)  # (B, K, H/8, W/8)
        score = crop_to(self.upscore_pool4(score), score3.shape[-2:]) + score3  # (B, K, H/8, W/8)
        return crop_to(self.upscore8(score), size)  # (B, K, H, W)


def fcn_vgg16(*, num_classes: int = 21, in_channels: int = 3, variant: str = "8s",
              learn_final_upsampling: bool = False) -> FCN:
    """The paper's FCN-32s/16s/8s on VGG16 (configuration D), FC6 7x7x4096, FC7 1x1x4096, no batch norm."""
    return FCN(CONFIGS["D"], num_classes=num_classes, in_channels=in_channels, variant=variant,
               learn_final_upsampling=learn_final_upsampling)


def fcn_mini(num_classes: int, *, in_channels: int = 3, variant: str = "8s",
             learn_final_upsampling: bool = False) -> FCN:
    """A narrow FCN for the quick profile: five pools, 16-128 filters, FC6 3x3x128, batch norm."""
    return FCN(MINI_LAYERS, num_classes=num_classes, in_channels=in_channels, variant=variant,
               head_channels=128, fc6_kernel=3, batch_norm=True, dropout=0.1,
               learn_final_upsampling=learn_final_upsampling)
