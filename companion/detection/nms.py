"""Non-maximum suppression: keep the best box of each cluster of overlapping detections.

A detector proposes many boxes around each object. Greedy NMS sorts them by score, keeps the best,
deletes every remaining box whose IoU with it is above ``iou_threshold``, and repeats with the best
box left. Two versions of the same algorithm, both equal to ``torchvision.ops.nms``:

- ``nms_loop`` is the algorithm as written: one IoU row against the boxes still in play per kept
  box, in a Python ``while`` loop.
- ``nms`` computes the whole ``(N, N)`` IoU matrix once, thresholds it, and walks the sorted boxes
  with a boolean ``suppressed`` mask: a box that survives suppresses the later boxes it overlaps.

``batched_nms`` runs NMS per class in a single call by shifting each class's boxes far enough apart
that boxes of different classes never overlap.

Taught in: book/03_detection/03_nms.ipynb.
"""

from __future__ import annotations

import torch

from companion.detection.boxes import box_iou, check_boxes


def _check_scores(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> None:
    check_boxes(boxes, "boxes")
    if not isinstance(scores, torch.Tensor) or scores.dim() != 1:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"scores must be a 1-D tensor (N,), got {shape}; flatten it with scores.reshape(-1).")
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"scores has {scores.shape[0]} entries but boxes has {boxes.shape[0]} rows; "
                         f"pass one score per box.")
    if not scores.is_floating_point():
        raise ValueError(f"scores must be a floating-point tensor, got {scores.dtype}; use scores.float().")
    if torch.isnan(scores).any():
        raise ValueError("scores contains NaN; remove those boxes before NMS.")
    if not isinstance(iou_threshold, (int, float)) or iou_threshold != iou_threshold:
        raise ValueError(f"iou_threshold must be a number, usually in [0, 1], got {iou_threshold!r}.")


def nms_loop(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS as a readable loop.

    Args:
        boxes: ``(N, 4)`` boxes in ``xyxy`` format.
        scores: ``(N,)`` scores; higher is better.
        iou_threshold: boxes whose IoU with a kept box is above this are discarded.

    Returns:
        ``(K,)`` int64 indices into ``boxes`` of the kept boxes, by decreasing score.
    """
    _check_scores(boxes, scores, iou_threshold)
    remaining = torch.argsort(scores, descending=True, stable=True)  # (N,) best first
    keep = []
    while remaining.numel() > 0:
        best, others = remaining[0], remaining[1:]
        keep.append(best)
        iou = box_iou(boxes[best].unsqueeze(0), boxes[others])[0]  # (R,) IoU of the best with the rest
        remaining = others[iou <= iou_threshold]  # drop the boxes the best one covers
    if not keep:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    return torch.stack(keep)  # (K,)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS, vectorised: one IoU matrix, then a walk over a boolean mask.

    Same result as ``nms_loop`` and ``torchvision.ops.nms``. It needs ``N * N`` memory for the IoU
    matrix, fine for the few thousand boxes a detector keeps before NMS.

    Args:
        boxes: ``(N, 4)`` boxes in ``xyxy`` format.
        scores: ``(N,)`` scores; higher is better.
        iou_threshold: boxes whose IoU with a kept box is above this are discarded.

    Returns:
        ``(K,)`` int64 indices into ``boxes`` of the kept boxes, by decreasing score.
    """
    _check_scores(boxes, scores, iou_threshold)
    order = torch.argsort(scores, descending=True, stable=True)  # (N,) best first
    sorted_boxes = boxes[order]  # (N, 4)
    iou = box_iou(sorted_boxes, sorted_boxes)  # (N, N)
    # overlaps[i, j]: box i would suppress box j (j comes later in the order and overlaps too much).
    overlaps = (iou > iou_threshold).triu(diagonal=1)  # (N, N)
    suppressed = torch.zeros(order.shape[0], dtype=torch.bool, device=boxes.device)  # (N,)
    for i in range(order.shape[0]):
        if not suppressed[i]:  # box i survives all better boxes: it is kept and suppresses its overlaps
            suppressed |= overlaps[i]
    return order[~suppressed]  # (K,) kept, still best first


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """NMS within each category: boxes of different categories never suppress each other.

    The coordinate-offset trick: shift every box of category ``k`` by ``k * span`` along both axes,
    where ``span`` is the extent of all coordinates plus one. Boxes of different categories then lie
    in disjoint squares and have IoU 0, so a single ``nms`` call does the work of one call per category.
    (torchvision uses ``max + 1`` as the span, which assumes coordinates above -1; ``max - min + 1``
    also separates boxes with negative coordinates.)

    Args:
        boxes: ``(N, 4)`` boxes in ``xyxy`` format.
        scores: ``(N,)`` scores; higher is better.
        idxs: ``(N,)`` integer category of each box.
        iou_threshold: boxes whose IoU with a kept box of the same category is above this are discarded.

    Returns:
        ``(K,)`` int64 indices into ``boxes`` of the kept boxes, by decreasing score.
    """
    _check_scores(boxes, scores, iou_threshold)
    if not isinstance(idxs, torch.Tensor) or idxs.dim() != 1 or idxs.shape[0] != boxes.shape[0]:
        shape = tuple(idxs.shape) if isinstance(idxs, torch.Tensor) else type(idxs).__name__
        raise ValueError(f"idxs must be a 1-D tensor with one category per box ({boxes.shape[0]},), "
                         f"got {shape}.")
    if idxs.is_floating_point() or idxs.is_complex() or idxs.dtype == torch.bool:
        raise ValueError(f"idxs must be an integer tensor of categories, got {idxs.dtype}; use idxs.long().")
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    span = boxes.max() - boxes.min() + 1  # () larger than any box and any gap between boxes
    offsets = idxs.to(boxes) * span  # (N,)
    shifted_boxes = boxes + offsets[:, None]  # (N, 4), each category in its own square
    return nms(shifted_boxes, scores, iou_threshold)
