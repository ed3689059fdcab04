"""Non-maximum suppression: keep the best box of each cluster of overlapping detections.

A detector proposes many boxes around each object. Greedy NMS sorts them by score, keeps the best,
deletes every remaining box whose IoU with it is above ``iou_threshold``, and repeats with the best
box left. Two versions of the same algorithm, both equal to ``torchvision.ops.nms``:

- ``nms_loop`` is the algorithm as written: one IoU row against the boxes still in play per kept
  box, in a Python ``while`` loop.
- ``nms`` works on blocks of the best ``block_size`` boxes still in play. Inside a block, one small
  IoU matrix lists the overlapping pairs and a Python walk over those pairs decides which boxes
  survive; the survivors then suppress all later boxes with one IoU matrix. The Python loop runs
  about ``K / block_size`` times instead of ``K`` (the number of kept boxes), and IoUs are computed
  only against boxes that are still candidates, never the full ``(N, N)`` matrix.

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


def _iou_matrix(rows1: torch.Tensor, rows2: torch.Tensor) -> torch.Tensor:
    """IoU of checked boxes stored by rows: ``rows`` is ``(5, N)``, the rows x1, y1, x2, y2 and area.

    The same operations in the same order as ``box_iou`` (so bit-for-bit the same values), but on
    contiguous ``(N, M)`` planes instead of ``(N, M, 2)`` corner pairs, with the areas computed once
    and without the input checks, which ``nms`` runs once: on the small blocks of ``nms`` this is
    2-3x faster than calling ``box_iou``.

    Returns:
        ``(N, M)`` IoU of every box of the first set with every box of the second.
    """
    top_left = torch.max(rows1[0:2, :, None], rows2[0:2, None, :])  # (2, N, M)
    bottom_right = torch.min(rows1[2:4, :, None], rows2[2:4, None, :])  # (2, N, M)
    width_height = (bottom_right - top_left).clamp(min=0)  # (2, N, M)
    intersection = width_height[0] * width_height[1]  # (N, M)
    return intersection / (rows1[4, :, None] + rows2[4, None, :] - intersection)  # (N, M)


def _suppressed_in_block(overlaps: torch.Tensor) -> torch.Tensor:
    """Greedy NMS inside one block, given ``overlaps[i, j]`` (``i < j``): box ``i`` covers box ``j``.

    Walks the overlapping pairs row by row, so every box is decided (kept or suppressed) before its
    own row is read. Plain Python lists: reading a list element costs tens of nanoseconds, reading
    one element of a tensor a microsecond or more.

    Returns:
        ``(B,)`` bool, True for the boxes of the block that a better box of the block suppresses.
    """
    suppressed = [False] * overlaps.shape[0]
    for i, j in overlaps.nonzero().tolist():  # pairs (i, j) with i < j, sorted by i
        if not suppressed[i]:  # i survives every better box, so it is kept and suppresses j
            suppressed[j] = True
    return torch.tensor(suppressed, dtype=torch.bool, device=overlaps.device)  # (B,)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, *,
        block_size: int = 64) -> torch.Tensor:
    """Greedy NMS, vectorised over blocks of the best remaining boxes.

    Same result as ``nms_loop`` and ``torchvision.ops.nms``. Each round takes the ``block_size`` best
    boxes still in play, runs greedy NMS among them (one ``(B, B)`` IoU matrix and a walk over its
    overlapping pairs), and lets the block's survivors suppress every later box at once (one
    ``(K_b, R)`` IoU matrix). ``block_size=1`` does the work of ``nms_loop``; a block as large as the
    input computes the full ``(N, N)`` IoU matrix once. The default of 64 keeps both the number of
    Python rounds and the wasted IoUs small; memory is ``O(block_size * N)``.

    Args:
        boxes: ``(N, 4)`` boxes in ``xyxy`` format.
        scores: ``(N,)`` scores; higher is better.
        iou_threshold: boxes whose IoU with a kept box is above this are discarded.
        block_size: how many candidate boxes each round decides.

    Returns:
        ``(K,)`` int64 indices into ``boxes`` of the kept boxes, by decreasing score.
    """
    _check_scores(boxes, scores, iou_threshold)
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}; the default is 64.")
    order = torch.argsort(scores, descending=True, stable=True)  # (N,) best first
    sorted_boxes = boxes[order]  # (N, 4)
    areas = (sorted_boxes[:, 2] - sorted_boxes[:, 0]) * (sorted_boxes[:, 3] - sorted_boxes[:, 1])  # (N,)
    # (5, N): rows x1, y1, x2, y2, area. One index_select(1, ...) gathers boxes, 2-3x faster than [:, ...].
    rows = torch.cat([sorted_boxes.T, areas[None]]).contiguous()
    remaining = torch.arange(order.shape[0], device=boxes.device)  # (R,) undecided, positions in order
    kept = [remaining[:0]]  # one (K_b,) tensor per block
    while remaining.numel() > 0:
        block, rest = remaining[:block_size], remaining[block_size:]  # (B,), (R - B,)
        block_rows = rows.index_select(1, block)  # (5, B)
        # overlaps[i, j]: box i of the block would suppress the later box j of the block.
        overlaps = (_iou_matrix(block_rows, block_rows) > iou_threshold).triu(diagonal=1)  # (B, B)
        survivors = block[~_suppressed_in_block(overlaps)]  # (K_b,) kept; the block's best always is
        kept.append(survivors)
        # Every later box covered by a survivor is out; the others are the next rounds' candidates.
        iou = _iou_matrix(rows.index_select(1, survivors), rows.index_select(1, rest))  # (K_b, R - B)
        remaining = rest[~(iou > iou_threshold).any(dim=0)]  # (R',) not covered
    return order[torch.cat(kept)]  # (K,) kept, still best first


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
