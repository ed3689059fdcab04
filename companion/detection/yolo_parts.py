"""Building blocks shared by the small one-stage detectors: layers, backbones, grid helpers.

``ConvBNAct`` (convolution, batch norm, SiLU) and ``Residual`` (a Darknet-53 bottleneck block) are the
units of both backbones. ``TinyBackbone`` ends at stride 8 (used by ``fcos_mini``);
``PyramidBackbone`` adds a second top-down step, as a feature pyramid network (Lin et al. 2017) or
YOLOv3's path does, and ends at stride 4, a ``24 x 24`` grid on a 96-pixel scene (used by
``yolo_mini``): small and thin objects then still cover a few cells.

Taught in: book/03_detection/07_yolo.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNAct(nn.Sequential):
    """Convolution, batch normalisation and SiLU: the unit every layer of the small detectors uses."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.SiLU(inplace=True),
        )


class Residual(nn.Module):
    """``x + conv3x3(conv1x1(x))`` with a bottleneck of half the channels (a Darknet-53 block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(channels, channels // 2, kernel_size=1)
        self.conv2 = ConvBNAct(channels // 2, channels, kernel_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class TinyBackbone(nn.Module):
    """A small Darknet-style backbone with a top-down path: one feature map at stride 8.

    Stride-16 features (more context: a 48-pixel object fits in their receptive field) are upsampled
    and concatenated with the stride-8 features, as YOLOv3's feature pyramid does, then mixed by a
    1 x 1 convolution and a residual block.

    Args:
        width: channels of the first stage; later stages use 2x, 4x and 8x.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvBNAct(3, width, stride=2), ConvBNAct(width, 2 * width, stride=2),
                                  Residual(2 * width))  # stride 4
        self.stage8 = nn.Sequential(ConvBNAct(2 * width, 4 * width, stride=2), Residual(4 * width),
                                    Residual(4 * width))  # stride 8
        self.stage16 = nn.Sequential(ConvBNAct(4 * width, 8 * width, stride=2), Residual(8 * width))  # stride 16
        self.reduce = ConvBNAct(8 * width, 4 * width, kernel_size=1)
        self.fuse = nn.Sequential(ConvBNAct(8 * width, 4 * width, kernel_size=1), Residual(4 * width))
        self.out_channels = 4 * width
        self.stride = 8

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, 4 * width, H / 8, W / 8)``."""
        c8 = self.stage8(self.stem(images))  # (B, 4w, H/8, W/8)
        c16 = self.stage16(c8)  # (B, 8w, H/16, W/16)
        top_down = F.interpolate(self.reduce(c16), size=c8.shape[-2:], mode="nearest")  # (B, 4w, H/8, W/8)
        return self.fuse(torch.cat([c8, top_down], dim=1))  # (B, 4w, H/8, W/8)


class PyramidBackbone(nn.Module):
    """A Darknet-style backbone with a two-step top-down path: one feature map at stride 4.

    Bottom-up: stride 4 (``2 * width`` channels), 8 (``4 * width``) and 16 (``8 * width``). Top-down:
    the stride-16 features are reduced, upsampled and concatenated with the stride-8 ones and mixed;
    the result is reduced, upsampled and concatenated with the stride-4 features and mixed again.
    The output has the fine grid of stride 4 and, through the merged paths, the context of stride 16.

    Args:
        width: channels of the first layer; the stages use 2x, 4x and 8x, the output 2x.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvBNAct(3, width, stride=2), ConvBNAct(width, 2 * width, stride=2),
                                  Residual(2 * width))  # stride 4
        self.stage8 = nn.Sequential(ConvBNAct(2 * width, 4 * width, stride=2), Residual(4 * width))  # stride 8
        self.stage16 = nn.Sequential(ConvBNAct(4 * width, 8 * width, stride=2), Residual(8 * width))  # stride 16
        self.reduce16 = ConvBNAct(8 * width, 4 * width, kernel_size=1)
        self.fuse8 = nn.Sequential(ConvBNAct(8 * width, 4 * width, kernel_size=1), Residual(4 * width))
        self.reduce8 = ConvBNAct(4 * width, 2 * width, kernel_size=1)
        self.fuse4 = nn.Sequential(ConvBNAct(4 * width, 2 * width, kernel_size=1), Residual(2 * width))
        self.out_channels = 2 * width
        self.stride = 4

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, 2 * width, H / 4, W / 4)``."""
        c4 = self.stem(images)  # (B, 2w, H/4, W/4)
        c8 = self.stage8(c4)  # (B, 4w, H/8, W/8)
        c16 = self.stage16(c8)  # (B, 8w, H/16, W/16)
        up16 = F.interpolate(self.reduce16(c16), size=c8.shape[-2:], mode="nearest")  # (B, 4w, H/8, W/8)
        p8 = self.fuse8(torch.cat([c8, up16], dim=1))  # (B, 4w, H/8, W/8)
        up8 = F.interpolate(self.reduce8(p8), size=c4.shape[-2:], mode="nearest")  # (B, 2w, H/4, W/4)
        return self.fuse4(torch.cat([c4, up8], dim=1))  # (B, 2w, H/4, W/4)


def images_as_batch(images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Accept a ``(B, 3, H, W)`` tensor or a list of same-size ``(3, H, W)`` tensors (torchvision's forms)."""
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}.")
        return images
    if len({tuple(image.shape) for image in images}) != 1:
        raise ValueError("images of one batch must share a size; resize them first.")
    return torch.stack(list(images))  # (B, 3, H, W)


def grid_corners(height: int, width: int, stride: int, like: torch.Tensor) -> torch.Tensor:
    """``(H * W, 2)`` pixel ``(x, y)`` of the top-left corner of each cell, row by row."""
    ys = torch.arange(height, device=like.device, dtype=like.dtype) * stride
    xs = torch.arange(width, device=like.device, dtype=like.dtype) * stride
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
    return torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)  # (H * W, 2)


def paired_giou_and_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GIoU and IoU of ``boxes1[i]`` with ``boxes2[i]`` (the diagonal of ``generalized_box_iou``).

    Training compares each prediction with its own object only, so the full ``(N, N)`` matrix is not
    needed.

    Args:
        boxes1: ``(N, 4)`` xyxy boxes (e.g. predictions).
        boxes2: ``(N, 4)`` xyxy boxes (e.g. their objects).

    Returns:
        ``giou`` and ``iou``, each ``(N,)``.
    """
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])  # (N,)
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])  # (N,)
    overlap = (torch.min(boxes1[:, 2:], boxes2[:, 2:]) - torch.max(boxes1[:, :2], boxes2[:, :2])).clamp(min=0)
    intersection = overlap[:, 0] * overlap[:, 1]  # (N,)
    union = area1 + area2 - intersection  # (N,)
    iou = intersection / union
    enclosing = torch.max(boxes1[:, 2:], boxes2[:, 2:]) - torch.min(boxes1[:, :2], boxes2[:, :2])  # (N, 2)
    enclosing_area = enclosing[:, 0] * enclosing[:, 1]  # (N,)
    return iou - (enclosing_area - union) / enclosing_area, iou
