"""RoI pooling and RoI Align: a fixed-size feature grid from each region of a feature map.

A two-stage detector classifies each proposed region with the same small head, so it needs, for a
box of any size, a feature tensor of one fixed size ``(C, PH, PW)``. The box is mapped onto the
feature map (multiplied by ``spatial_scale``, e.g. 1/16 for a stride-16 backbone) and cut into
``PH x PW`` bins.

- **RoI pooling** (Fast R-CNN, Girshick 2015) rounds the box to whole feature cells, cuts it into
  bins with integer borders (``floor`` for the start, ``ceil`` for the end of each bin) and takes the
  maximum of each bin. The two roundings shift the features by up to a cell: a stride-16 backbone
  misplaces them by up to 16 image pixels.
- **RoI Align** (Mask R-CNN, He et al. 2017) does not round: each bin is sampled at a regular
  ``grid_h x grid_w`` grid of points (``sampling_ratio``, or ``ceil(bin size)`` when it is -1),
  each value read by bilinear interpolation, and the samples averaged. With ``aligned=True`` the box
  is shifted by half a cell, so that a pixel's centre, not its corner, sits at integer coordinates.

Both follow torchvision's kernels rule for rule, so they give ``torchvision.ops``' numbers; they are
written for reading, not speed. Bilinear interpolation is *separable*: the weight of feature cell
``(h, w)`` for a sample at ``(y, x)`` is ``a(y, h) * b(x, w)``. Averaging the samples of each bin
keeps that product form, so RoI Align of one region is two small matrix products,
``A_y @ F @ A_x.T`` with ``A_y`` of shape ``(PH, H)`` and ``A_x`` of shape ``(PW, W)``.

Taught in: book/03_detection/05_rcnn_family.ipynb.
"""

from __future__ import annotations

import torch


def _pair(output_size: int | tuple[int, int]) -> tuple[int, int]:
    pair = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(pair) != 2 or any(not isinstance(n, int) or n <= 0 for n in pair):
        raise ValueError(f"output_size must be a positive int or a pair (PH, PW), got {output_size!r}.")
    return pair


def _as_rois(input: torch.Tensor, boxes: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """Check ``input`` and turn ``boxes`` into a ``(K, 5)`` tensor ``(batch_index, x1, y1, x2, y2)``."""
    if not isinstance(input, torch.Tensor) or input.dim() != 4 or not input.is_floating_point():
        shape = tuple(input.shape) if isinstance(input, torch.Tensor) else type(input).__name__
        raise ValueError(f"input must be a floating-point feature map (B, C, H, W), got {shape}.")
    if isinstance(boxes, (list, tuple)):
        for i, image_boxes in enumerate(boxes):
            if not isinstance(image_boxes, torch.Tensor) or image_boxes.dim() != 2 or image_boxes.shape[1] != 4:
                raise ValueError(f"boxes[{i}] must be a (K_i, 4) tensor of xyxy boxes for image {i}.")
        indices = [torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)]  # (K_i, 1) each
        boxes = torch.cat([torch.cat([idx, b], dim=1) for idx, b in zip(indices, boxes)]) if boxes else \
            input.new_zeros(0, 5)  # (K, 5)
    if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] != 5:
        shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must be a (K, 5) tensor (batch_index, x1, y1, x2, y2) or a list of "
                         f"(K_i, 4) tensors, one per image; got {shape}.")
    if torch.isnan(boxes).any():
        raise ValueError("boxes contains NaN; remove those regions first.")
    batch_index = boxes[:, 0]
    if ((batch_index < 0) | (batch_index >= input.shape[0]) | (batch_index != batch_index.round())).any():
        raise ValueError(f"the batch index in boxes[:, 0] must be an integer in [0, {input.shape[0]}) "
                         f"(input has {input.shape[0]} images).")
    return boxes.to(input.dtype)


def _sampling_matrix(start: torch.Tensor, bin_size: torch.Tensor, grid: torch.Tensor,
                     pooled: int, size: int) -> torch.Tensor:
    """Average bilinear weights of each bin's samples along one axis.

    Args:
        start: ``(K,)`` start of each region on this axis, in feature cells.
        bin_size: ``(K,)`` bin length.
        grid: ``(K,)`` int, samples per bin on this axis (0 or less: no samples).
        pooled: number of bins ``P``.
        size: length of the feature map on this axis.

    Returns:
        ``(K, P, size)``: entry ``[k, p, i]`` is the mean, over the samples of bin ``p``, of the
        bilinear weight of cell ``i``.
    """
    max_grid = max(int(grid.max()), 1) if grid.numel() else 1
    bins = torch.arange(pooled, device=start.device, dtype=start.dtype)  # (P,)
    samples = torch.arange(max_grid, device=start.device)  # (G,)
    grid_f = grid.clamp(min=1).to(start.dtype)  # (K,)
    # Sample positions, written as the kernel writes them: start + p * bin + (s + 0.5) * bin / grid.
    positions = (start[:, None, None] + bins[None, :, None] * bin_size[:, None, None]
                 + (samples[None, None, :] + 0.5).to(start.dtype) * bin_size[:, None, None]
                 / grid_f[:, None, None])  # (K, P, G)
    used = samples[None, None, :] < grid[:, None, None]  # (K, 1, G) this region samples this many points
    inside = (positions >= -1.0) & (positions <= size)  # (K, P, G) samples beyond one cell outside count 0
    positions = positions.clamp(min=0)
    low = positions.floor().long()  # (K, P, G) cell left of (above) the sample
    at_edge = low >= size - 1  # beyond the last cell centre: read the last cell only
    low = torch.where(at_edge, size - 1, low)
    high = torch.where(at_edge, size - 1, low + 1)
    positions = torch.where(at_edge, low.to(positions.dtype), positions)
    fraction = positions - low  # (K, P, G) distance to the low cell
    keep = (used & inside).to(start.dtype)  # (K, P, G)
    weights = torch.zeros(*positions.shape, size, dtype=start.dtype, device=start.device)  # (K, P, G, size)
    weights.scatter_add_(-1, low[..., None], ((1 - fraction) * keep)[..., None])
    weights.scatter_add_(-1, high[..., None], (fraction * keep)[..., None])
    return weights.sum(dim=2) / grid_f[:, None, None]  # (K, P, size) mean over the samples


def roi_align(input: torch.Tensor, boxes: torch.Tensor | list[torch.Tensor], output_size: int | tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> torch.Tensor:
    """RoI Align, equal to ``torchvision.ops.roi_align``.

    Args:
        input: ``(B, C, H, W)`` feature maps.
        boxes: ``(K, 5)`` regions ``(batch_index, x1, y1, x2, y2)`` in image pixels, or a list of
            ``(K_i, 4)`` boxes, one tensor per image.
        output_size: ``PH`` and ``PW``, an int or a pair.
        spatial_scale: feature cells per image pixel (1 / stride).
        sampling_ratio: samples per bin along each axis; ``-1`` (or 0) picks ``ceil(bin size)`` per
            region.
        aligned: shift the box by -0.5 cell so that samples sit at pixel centres (as in Detectron2).
            Without it, regions are at least one cell wide and tall, as in the original.

    Returns:
        ``(K, C, PH, PW)`` pooled features, differentiable with respect to ``input``.
    """
    pooled_h, pooled_w = _pair(output_size)
    rois = _as_rois(input, boxes)  # (K, 5)
    _, channels, height, width = input.shape
    offset = 0.5 if aligned else 0.0
    start_x = rois[:, 1] * spatial_scale - offset  # (K,)
    start_y = rois[:, 2] * spatial_scale - offset  # (K,)
    roi_w = rois[:, 3] * spatial_scale - offset - start_x  # (K,)
    roi_h = rois[:, 4] * spatial_scale - offset - start_y  # (K,)
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_w, bin_h = roi_w / pooled_w, roi_h / pooled_h  # (K,) each
    if sampling_ratio > 0:
        grid_w = torch.full_like(bin_w, sampling_ratio, dtype=torch.long)  # (K,)
        grid_h = torch.full_like(bin_h, sampling_ratio, dtype=torch.long)  # (K,)
    else:  # adaptive: about one sample per feature cell
        grid_w, grid_h = torch.ceil(bin_w).long(), torch.ceil(bin_h).long()  # (K,) each

    rows = _sampling_matrix(start_y, bin_h, grid_h, pooled_h, height)  # (K, PH, H)
    cols = _sampling_matrix(start_x, bin_w, grid_w, pooled_w, width)  # (K, PW, W)
    output = input.new_zeros(rois.shape[0], channels, pooled_h, pooled_w)  # (K, C, PH, PW)
    batch_index = rois[:, 0].long()  # (K,)
    for image in batch_index.unique().tolist():
        selected = batch_index == image  # (K,)
        # out[k, c, p, q] = sum_{h, w} rows[k, p, h] * input[c, h, w] * cols[k, q, w]
        output[selected] = torch.einsum("kph,chw,kqw->kcpq", rows[selected], input[image], cols[selected])
    return output


def _round_half_away_from_zero(x: torch.Tensor) -> torch.Tensor:
    """C's ``round``: 2.5 -> 3 and -2.5 -> -3 (``torch.round`` rounds halves to even)."""
    whole = torch.trunc(x)
    return whole + torch.sign(x) * ((x - whole).abs() >= 0.5).to(x.dtype)


def roi_pool(input: torch.Tensor, boxes: torch.Tensor | list[torch.Tensor], output_size: int | tuple[int, int],
             spatial_scale: float = 1.0) -> torch.Tensor:
    """RoI max pooling, equal to ``torchvision.ops.roi_pool``.

    Args:
        input: ``(B, C, H, W)`` feature maps.
        boxes: ``(K, 5)`` regions ``(batch_index, x1, y1, x2, y2)`` in image pixels, or a list of
            ``(K_i, 4)`` boxes, one tensor per image.
        output_size: ``PH`` and ``PW``, an int or a pair.
        spatial_scale: feature cells per image pixel (1 / stride).

    Returns:
        ``(K, C, PH, PW)``: the maximum of each bin; 0 for a bin that lies entirely outside the map.
    """
    pooled_h, pooled_w = _pair(output_size)
    rois = _as_rois(input, boxes)  # (K, 5)
    _, channels, height, width = input.shape
    corners = _round_half_away_from_zero(rois[:, 1:] * spatial_scale).long()  # (K, 4) whole cells
    start_x, start_y, end_x, end_y = corners.unbind(dim=1)  # (K,) each
    roi_w = (end_x - start_x + 1).clamp(min=1)  # (K,) both ends included; malformed regions are 1 x 1
    roi_h = (end_y - start_y + 1).clamp(min=1)  # (K,)

    def bin_edges(start: torch.Tensor, length: torch.Tensor, pooled: int, size: int) -> tuple[torch.Tensor, ...]:
        bin_size = length.to(input.dtype) / pooled  # (K,)
        bins = torch.arange(pooled, device=input.device, dtype=input.dtype)  # (P,)
        first = torch.floor(bins[None, :] * bin_size[:, None]).long() + start[:, None]  # (K, P)
        last = torch.ceil((bins[None, :] + 1) * bin_size[:, None]).long() + start[:, None]  # (K, P) exclusive
        return first.clamp(0, size), last.clamp(0, size)

    row_first, row_last = bin_edges(start_y, roi_h, pooled_h, height)  # (K, PH) each
    col_first, col_last = bin_edges(start_x, roi_w, pooled_w, width)  # (K, PW) each
    row_index = torch.arange(height, device=input.device)  # (H,)
    col_index = torch.arange(width, device=input.device)  # (W,)
    in_row_bin = (row_index >= row_first[..., None]) & (row_index < row_last[..., None])  # (K, PH, H)
    in_col_bin = (col_index >= col_first[..., None]) & (col_index < col_last[..., None])  # (K, PW, W)
    empty = (row_last <= row_first)[:, :, None] | (col_last <= col_first)[:, None, :]  # (K, PH, PW)

    output = input.new_zeros(rois.shape[0], channels, pooled_h, pooled_w)  # (K, C, PH, PW)
    lowest = torch.finfo(input.dtype).min
    for k, image in enumerate(rois[:, 0].long().tolist()):
        features = input[image]  # (C, H, W)
        # Max is separable too: first over the columns of each column bin, then over the rows.
        masked = features[:, :, None, :].masked_fill(~in_col_bin[k][None, None], lowest)  # (C, H, PW, W)
        column_max = masked.amax(dim=-1)  # (C, H, PW)
        masked = column_max[:, None, :, :].masked_fill(~in_row_bin[k][None, :, :, None], lowest)  # (C, PH, H, PW)
        output[k] = masked.amax(dim=2).masked_fill(empty[k][None], 0.0)  # (C, PH, PW)
    return output
