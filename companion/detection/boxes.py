"""Boxes and their overlap: formats, area, IoU and generalized IoU.

A box is four numbers. Following torchvision, the library's own format is ``xyxy``: the corners
``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``. Datasets also use ``xywh`` (top-left corner,
width, height; COCO) and ``cxcywh`` (centre, width, height; YOLO, DETR). A set of ``N`` boxes is a
float tensor of shape ``(N, 4)``.

Intersection over union, ``IoU = |A ∩ B| / |A ∪ B|``, measures how well two boxes agree. Generalized
IoU (Rezatofighi et al. 2019) subtracts the share of the smallest enclosing box ``C`` that neither box
covers, ``GIoU = IoU - |C \\ (A ∪ B)| / |C|``, so that it still ranks boxes that do not overlap.
The formulas are written as torchvision writes them, so both give the same numbers.

Taught in: book/03_detection/01_boxes_iou.ipynb.
"""

from __future__ import annotations

import torch

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def check_boxes(boxes: torch.Tensor, name: str = "boxes", fmt: str = "xyxy") -> None:
    """Raise a ``ValueError`` unless ``boxes`` is a valid ``(N, 4)`` float tensor in format ``fmt``.

    Args:
        boxes: the boxes to check, ``(N, 4)``.
        name: the argument's name, used in the message.
        fmt: ``"xyxy"`` requires ``x1 <= x2`` and ``y1 <= y2``; the other formats a width and height
            that are not negative.
    """
    if not isinstance(boxes, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, 4), got {type(boxes).__name__}; "
                         f"convert it with torch.as_tensor({name}, dtype=torch.float32).")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {tuple(boxes.shape)}; "
                         f"reshape it with {name}.reshape(-1, 4).")
    if not boxes.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {boxes.dtype}; "
                         f"convert it with {name}.float().")
    if torch.isnan(boxes).any():
        raise ValueError(f"{name} contains NaN; remove or fix those boxes first.")
    if fmt == "xyxy":
        if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
            raise ValueError(f"{name} has boxes with x2 < x1 or y2 < y1; boxes must be (x1, y1, x2, y2) "
                             f"corners: convert other formats with box_convert(..., out_fmt='xyxy').")
    elif (boxes[:, 2:] < 0).any():
        raise ValueError(f"{name} has boxes with a negative width or height in format '{fmt}'; "
                         f"check the format name and the data.")


def _check_format(fmt: str, name: str) -> None:
    if fmt not in BOX_FORMATS:
        raise ValueError(f"{name} must be one of {BOX_FORMATS}, got {fmt!r}.")


def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
    """Convert boxes between the ``xyxy``, ``xywh`` and ``cxcywh`` formats.

    Every conversion goes through ``xyxy``, as in torchvision.

    Args:
        boxes: ``(N, 4)`` boxes in format ``in_fmt``.
        in_fmt: ``"xyxy"``, ``"xywh"`` or ``"cxcywh"``.
        out_fmt: the format to return, one of the same three.

    Returns:
        ``(N, 4)`` boxes in format ``out_fmt``, on the input's device and dtype.
    """
    _check_format(in_fmt, "in_fmt")
    _check_format(out_fmt, "out_fmt")
    check_boxes(boxes, "boxes", in_fmt)
    if in_fmt == out_fmt:
        return boxes.clone()

    a, b, c, d = boxes.unbind(dim=-1)  # four (N,) columns
    if in_fmt == "xywh":  # (x, y, w, h) -> (x1, y1, x2, y2)
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":  # (cx, cy, w, h) -> (x1, y1, x2, y2)
        a, b, c, d = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d

    x1, y1, x2, y2 = a, b, c, d
    if out_fmt == "xyxy":
        out = (x1, y1, x2, y2)
    elif out_fmt == "xywh":
        out = (x1, y1, x2 - x1, y2 - y1)
    else:  # cxcywh
        out = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
    return torch.stack(out, dim=-1)  # (N, 4)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of each box, ``(x2 - x1) * (y2 - y1)``.

    Args:
        boxes: ``(N, 4)`` boxes in ``xyxy`` format.

    Returns:
        ``(N,)`` areas, on the input's device and dtype.
    """
    check_boxes(boxes, "boxes")
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (N,)


def _intersection_and_union(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise intersection and union areas of valid ``xyxy`` boxes, each ``(N, M)``."""
    area1 = box_area(boxes1)  # (N,)
    area2 = box_area(boxes2)  # (M,)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    width_height = (bottom_right - top_left).clamp(min=0)  # (N, M, 2); 0 where boxes do not meet
    intersection = width_height[..., 0] * width_height[..., 1]  # (N, M)
    union = area1[:, None] + area2[None, :] - intersection  # (N, M)
    return intersection, union


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every box in ``boxes1`` with every box in ``boxes2``.

    Args:
        boxes1: ``(N, 4)`` boxes in ``xyxy`` format.
        boxes2: ``(M, 4)`` boxes in ``xyxy`` format.

    Returns:
        ``(N, M)`` IoU values in ``[0, 1]``; entry ``[i, j]`` compares ``boxes1[i]`` with ``boxes2[j]``.
    """
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    intersection, union = _intersection_and_union(boxes1, boxes2)
    return intersection / union  # (N, M)


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Generalized IoU (Rezatofighi et al. 2019) of every pair of boxes.

    ``GIoU = IoU - (|C| - |A ∪ B|) / |C|`` with ``C`` the smallest box enclosing ``A`` and ``B``.

    Args:
        boxes1: ``(N, 4)`` boxes in ``xyxy`` format.
        boxes2: ``(M, 4)`` boxes in ``xyxy`` format.

    Returns:
        ``(N, M)`` GIoU values in ``[-1, 1]``, never above the IoU of the same pair.
    """
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    intersection, union = _intersection_and_union(boxes1, boxes2)
    iou = intersection / union  # (N, M)
    enclosing_top_left = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    enclosing_bottom_right = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    enclosing_wh = (enclosing_bottom_right - enclosing_top_left).clamp(min=0)  # (N, M, 2)
    enclosing_area = enclosing_wh[..., 0] * enclosing_wh[..., 1]  # (N, M)
    return iou - (enclosing_area - union) / enclosing_area  # (N, M)
