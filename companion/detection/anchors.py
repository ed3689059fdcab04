"""Anchor boxes: a fixed set of reference boxes tiled over every position of a feature map.

A detector that predicts boxes at every position of a feature map needs something to predict them
*relative to*. Faster R-CNN (Ren et al. 2015) places ``len(sizes) * len(aspect_ratios)`` anchors at
each position: an anchor of size ``s`` and aspect ratio ``a = h / w`` is the box of width
``s / sqrt(a)`` and height ``s * sqrt(a)`` (so its area is ``s**2``), and the anchors of position
``(i, j)`` of a map with stride ``(stride_h, stride_w)`` are centred on the image pixel
``(j * stride_w, i * stride_h)``. The detector then regresses small offsets from an anchor (see
``box_coder.py``) and classifies it. SSD (Liu et al. 2016) calls them default boxes.

Two conventions are written here:

- ``AnchorGenerator`` and ``grid_anchors``: torchvision's, in pixels. The half-sizes of the cell
  anchors are rounded to whole pixels, as torchvision rounds them, and a cell's anchors are centred
  on the cell's top-left corner. ``AnchorGenerator`` can replace
  ``torchvision.models.detection.anchor_utils.AnchorGenerator`` in torchvision's detectors.
- ``multibox_prior``: the convention of the d2l book, in coordinates normalised to ``[0, 1]``, centred
  on the middle of each cell, with ratio ``r = w / h`` and only ``n + m - 1`` of the size-ratio pairs:
  every size with the first ratio, and the first size with every other ratio.

Taught in: book/03_detection/02_anchors_and_matching.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def _check_sizes_and_ratios(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> None:
    if len(sizes) == 0 or len(aspect_ratios) == 0:
        raise ValueError("sizes and aspect_ratios need at least one value each, "
                         f"got sizes={tuple(sizes)}, aspect_ratios={tuple(aspect_ratios)}.")
    for value in list(sizes) + list(aspect_ratios):
        if not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
            raise ValueError(f"anchor sizes and aspect ratios must be positive finite numbers, "
                             f"got sizes={tuple(sizes)}, aspect_ratios={tuple(aspect_ratios)}.")


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float],
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """The anchors of one position, centred on ``(0, 0)``, with torchvision's rounding.

    Args:
        sizes: anchor sizes in pixels (the square root of the anchor's area).
        aspect_ratios: ratios ``h / w``.
        dtype: dtype of the result.
        device: device of the result.

    Returns:
        ``(len(aspect_ratios) * len(sizes), 4)`` boxes ``(-w/2, -h/2, w/2, h/2)`` rounded to whole
        pixels, ratio-major: the sizes of the first ratio come first.
    """
    _check_sizes_and_ratios(sizes, aspect_ratios)
    sizes_t = torch.as_tensor(sizes, dtype=dtype, device=device)  # (S,)
    ratios_t = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)  # (R,)
    height_factor = torch.sqrt(ratios_t)  # (R,) h = s * sqrt(a)
    width_factor = 1 / height_factor  # (R,) w = s / sqrt(a), so w * h = s**2 and h / w = a
    widths = (width_factor[:, None] * sizes_t[None, :]).reshape(-1)  # (R, S) -> (R*S,)
    heights = (height_factor[:, None] * sizes_t[None, :]).reshape(-1)  # (R*S,)
    half_boxes = torch.stack([-widths, -heights, widths, heights], dim=1) / 2  # (R*S, 4)
    return half_boxes.round()  # torchvision rounds half-sizes to whole pixels (half to even)


def grid_anchors(feature_size: tuple[int, int], stride: int | tuple[int, int], sizes: Sequence[float],
                 aspect_ratios: Sequence[float], dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """All anchors of one feature map, in image pixels (torchvision's convention).

    Args:
        feature_size: ``(H, W)`` of the feature map.
        stride: pixels between neighbouring positions, an int or ``(stride_h, stride_w)``.
        sizes: anchor sizes in pixels.
        aspect_ratios: ratios ``h / w``.
        dtype: dtype of the result.
        device: device of the result.

    Returns:
        ``(H * W * A, 4)`` anchors in ``xyxy`` format, with ``A = len(sizes) * len(aspect_ratios)``;
        position-major (row by row), the ``A`` anchors of a position next to each other.
    """
    if len(feature_size) != 2 or any(int(n) != n or n < 0 for n in feature_size):
        raise ValueError(f"feature_size must be (H, W) with non-negative integers, got {feature_size!r}.")
    stride_h, stride_w = (stride, stride) if isinstance(stride, (int, float)) else stride
    if not stride_h > 0 or not stride_w > 0:
        raise ValueError(f"stride must be positive, got {stride!r}.")
    base = cell_anchors(sizes, aspect_ratios, device=device).to(dtype)  # (A, 4), float32 math as torchvision
    height, width = int(feature_size[0]), int(feature_size[1])
    shifts_x = torch.arange(width, dtype=torch.int32, device=device) * stride_w  # (W,) cell corners
    shifts_y = torch.arange(height, dtype=torch.int32, device=device) * stride_h  # (H,)
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")  # (H, W) each
    shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)  # (H*W,)
    shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=1)  # (H*W, 4)
    anchors = shifts[:, None, :] + base[None, :, :]  # (H*W, 1, 4) + (1, A, 4) -> (H*W, A, 4)
    return anchors.reshape(-1, 4)  # (H*W*A, 4)


class AnchorGenerator(nn.Module):
    """Anchors for a batch of images and one or more feature maps (torchvision's semantics).

    ``sizes[k]`` and ``aspect_ratios[k]`` describe the anchors of feature map ``k``; each position of
    that map gets ``len(sizes[k]) * len(aspect_ratios[k])`` anchors. As in torchvision, a flat tuple
    of sizes means one size per feature map, and a flat tuple of ratios is used for every map. The
    stride of map ``k`` is ``image_size // feature_size`` along each axis.

    Args:
        sizes: per feature map, the anchor sizes in pixels.
        aspect_ratios: per feature map, the ratios ``h / w``.
    """

    def __init__(self, sizes: Sequence[Sequence[float]] = ((32, 64, 128),),
                 aspect_ratios: Sequence[Sequence[float]] = ((0.5, 1.0, 2.0),)) -> None:
        super().__init__()
        if len(sizes) == 0 or len(aspect_ratios) == 0:
            raise ValueError("sizes and aspect_ratios must not be empty; e.g. sizes=((32, 64, 128),), "
                             "aspect_ratios=((0.5, 1.0, 2.0),) for one feature map.")
        if not isinstance(sizes[0], (list, tuple)):
            sizes = tuple((size,) for size in sizes)
        if not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = (tuple(aspect_ratios),) * len(sizes)
        if len(sizes) != len(aspect_ratios):
            raise ValueError(f"sizes has {len(sizes)} entries (feature maps) but aspect_ratios has "
                             f"{len(aspect_ratios)}; give one tuple of each per feature map.")
        self.sizes = tuple(tuple(s) for s in sizes)
        self.aspect_ratios = tuple(tuple(a) for a in aspect_ratios)
        self.cell_anchors = [cell_anchors(s, a) for s, a in zip(self.sizes, self.aspect_ratios)]

    def num_anchors_per_location(self) -> list[int]:
        """Number of anchors at each position, one entry per feature map."""
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios)]

    def forward(self, images, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Anchors of every image.

        Args:
            images: a ``(B, 3, H, W)`` tensor or a torchvision ``ImageList`` (its padded ``tensors``
                give the image size, its ``image_sizes`` the number of images).
            feature_maps: one ``(B, C, H_k, W_k)`` tensor per feature map.

        Returns:
            ``B`` tensors of shape ``(sum_k H_k * W_k * A_k, 4)``, the same anchors for every image,
            feature map by feature map, in the feature maps' dtype and device.
        """
        if hasattr(images, "tensors"):  # torchvision's ImageList
            batch_images, num_images = images.tensors, len(images.image_sizes)
        elif isinstance(images, torch.Tensor) and images.dim() == 4:
            batch_images, num_images = images, images.shape[0]
        else:
            raise ValueError("images must be a (B, 3, H, W) tensor or a torchvision ImageList, got "
                             f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}.")
        if isinstance(feature_maps, torch.Tensor):
            feature_maps = [feature_maps]
        if len(feature_maps) != len(self.cell_anchors):
            raise ValueError(f"got {len(feature_maps)} feature maps but the generator has sizes for "
                             f"{len(self.cell_anchors)}; pass one entry of sizes and aspect_ratios per map.")
        image_h, image_w = batch_images.shape[-2:]
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        per_map = []
        for feature_map, sizes, ratios in zip(feature_maps, self.sizes, self.aspect_ratios):
            grid_h, grid_w = feature_map.shape[-2:]
            stride = (image_h // grid_h, image_w // grid_w)  # integer strides, as torchvision
            per_map.append(grid_anchors((grid_h, grid_w), stride, sizes, ratios, dtype, device))
        anchors = torch.cat(per_map)  # (sum_k H_k*W_k*A_k, 4)
        return [anchors.clone() for _ in range(num_images)]


def multibox_prior(feature_map: torch.Tensor, sizes: Sequence[float], ratios: Sequence[float]) -> torch.Tensor:
    """Anchors in normalised coordinates, centred on every cell (the d2l book's convention).

    For sizes ``s_1..s_n`` (fractions of the image height) and ratios ``r_1..r_m`` (``w / h``),
    each position gets ``n + m - 1`` boxes: ``(s_i, r_1)`` for every size, then ``(s_1, r_j)`` for
    ``j >= 2``. In pixels a box has height ``s * sqrt(1 / r) * H`` and width ``s * sqrt(r) * H``;
    dividing by the image size gives normalised width ``s * sqrt(r) * H / W`` and height ``s / sqrt(r)``.

    Args:
        feature_map: any tensor whose last two dimensions are ``(H, W)``.
        sizes: box sizes, fractions of the image in ``(0, 1]``.
        ratios: width-to-height ratios.

    Returns:
        ``(1, H * W * (n + m - 1), 4)`` boxes ``(x1, y1, x2, y2)`` in ``[0, 1]`` units (they may poke
        out of the image), position-major.
    """
    _check_sizes_and_ratios(sizes, ratios)
    height, width = feature_map.shape[-2:]
    device = feature_map.device
    sizes_t = torch.tensor(sizes, dtype=torch.float32, device=device)  # (n,)
    ratios_t = torch.tensor(ratios, dtype=torch.float32, device=device)  # (m,)
    centre_y = (torch.arange(height, device=device) + 0.5) / height  # (H,) middle of each cell
    centre_x = (torch.arange(width, device=device) + 0.5) / width  # (W,)
    grid_y, grid_x = torch.meshgrid(centre_y, centre_x, indexing="ij")  # (H, W) each
    centres = torch.stack([grid_x, grid_y, grid_x, grid_y], dim=-1).reshape(-1, 1, 4)  # (H*W, 1, 4)
    # The n + m - 1 (size, ratio) pairs: all sizes with the first ratio, the first size with the rest.
    widths = torch.cat([sizes_t * torch.sqrt(ratios_t[0]), sizes_t[0] * torch.sqrt(ratios_t[1:])])
    heights = torch.cat([sizes_t / torch.sqrt(ratios_t[0]), sizes_t[0] / torch.sqrt(ratios_t[1:])])
    widths = widths * height / width  # (n+m-1,) so that w / h = r in pixels on a non-square image
    half_boxes = torch.stack([-widths, -heights, widths, heights], dim=1) / 2  # (n+m-1, 4)
    boxes = centres + half_boxes[None]  # (H*W, 1, 4) + (1, n+m-1, 4) -> (H*W, n+m-1, 4)
    return boxes.reshape(1, -1, 4)  # (1, H*W*(n+m-1), 4)
