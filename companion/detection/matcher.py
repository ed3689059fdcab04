"""Matching anchors to ground-truth boxes by IoU: which anchor learns which object.

Training a detector needs a target for every anchor: the object it should regress to, or
"background". Faster R-CNN (Ren et al. 2015) labels an anchor positive when its IoU with some
ground-truth box is at least 0.7, negative when its IoU with every box is below 0.3, and ignores the
anchors in between. Since an object may have no anchor above 0.7, each ground-truth box also claims
the anchor(s) that overlap it most ("low-quality matches"). SSD (Liu et al. 2016) uses one
threshold, 0.5, plus the same best-anchor rule.

- ``Matcher`` is torchvision's ``models.detection._utils.Matcher``: it takes an ``(M, N)`` quality
  matrix (IoU of M ground-truth boxes with N anchors) and returns, per anchor, the index of its
  ground-truth box, ``-1`` (below ``low_threshold``: background) or ``-2`` (between the thresholds:
  ignored). Ties in "the anchors that overlap a box most" are all matched, as in torchvision.
- ``match_anchors`` is the same idea in its simplest form, from boxes: one threshold, and each
  ground-truth box forces its single best anchor.

Taught in: book/03_detection/02_anchors_and_matching.ipynb.
"""

from __future__ import annotations

import torch

from companion.detection.boxes import box_iou, check_boxes


class Matcher:
    """Assign each prediction (anchor) at most one ground-truth box from a quality matrix.

    Args:
        high_threshold: quality at or above this makes a match.
        low_threshold: quality below this (for every ground-truth box) means background; values in
            ``[low_threshold, high_threshold)`` are marked ``BETWEEN_THRESHOLDS`` (ignored in the loss).
        allow_low_quality_matches: also match, for each ground-truth box, the predictions with the
            highest quality for it (ties included), whatever that quality is.
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False) -> None:
        if low_threshold > high_threshold:
            raise ValueError(f"low_threshold ({low_threshold}) must be <= high_threshold ({high_threshold}); "
                             f"e.g. Faster R-CNN's RPN uses high 0.7, low 0.3.")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: torch.Tensor) -> torch.Tensor:
        """Match predictions to ground truth.

        Args:
            match_quality_matrix: ``(M, N)`` quality (usually IoU) of M ground-truth boxes with N
                predictions.

        Returns:
            ``(N,)`` int64: the matched ground-truth index in ``[0, M)``, or ``BELOW_LOW_THRESHOLD``
            (-1), or ``BETWEEN_THRESHOLDS`` (-2).
        """
        if not isinstance(match_quality_matrix, torch.Tensor) or match_quality_matrix.dim() != 2:
            shape = (tuple(match_quality_matrix.shape) if isinstance(match_quality_matrix, torch.Tensor)
                     else type(match_quality_matrix).__name__)
            raise ValueError(f"match_quality_matrix must be (M ground truth, N predictions), got {shape}; "
                             f"build it with box_iou(gt_boxes, anchors).")
        if match_quality_matrix.numel() == 0:  # the same errors as torchvision
            if match_quality_matrix.shape[0] == 0:
                raise ValueError("No ground-truth boxes available for one of the images during training")
            raise ValueError("No proposal boxes available for one of the images during training")

        best_quality, matches = match_quality_matrix.max(dim=0)  # (N,), (N,): best gt for each prediction
        best_gt_of_each_prediction = matches.clone()  # (N,) kept for the low-quality matches

        matches[best_quality < self.low_threshold] = self.BELOW_LOW_THRESHOLD
        between = (best_quality >= self.low_threshold) & (best_quality < self.high_threshold)  # (N,)
        matches[between] = self.BETWEEN_THRESHOLDS

        if self.allow_low_quality_matches:
            # For each gt, the predictions that reach its highest quality (ties included) ...
            best_quality_of_each_gt = match_quality_matrix.max(dim=1).values  # (M,)
            _, predictions = torch.where(match_quality_matrix == best_quality_of_each_gt[:, None])  # (P,)
            # ... are matched to their own best gt (which may be another gt with the same quality).
            matches[predictions] = best_gt_of_each_prediction[predictions]
        return matches


def match_anchors(anchors: torch.Tensor, gt_boxes: torch.Tensor, iou_threshold: float = 0.5) -> torch.Tensor:
    """Assign each anchor a ground-truth box: the simplest readable rule.

    1. Each anchor takes the ground-truth box it overlaps most, if that IoU is at least
       ``iou_threshold``; otherwise it is background (-1).
    2. Each ground-truth box then takes its best anchor (the first one among ties), whatever the IoU,
       so that no object is left without a positive anchor. If two boxes share a best anchor, the
       later box wins.

    Unlike ``Matcher``, an image without ground truth is allowed: every anchor is background.

    Args:
        anchors: ``(N, 4)`` anchors in ``xyxy`` format.
        gt_boxes: ``(M, 4)`` ground-truth boxes in ``xyxy`` format.
        iou_threshold: smallest IoU for a positive anchor.

    Returns:
        ``(N,)`` int64: the matched ground-truth index in ``[0, M)``, or -1 for background.
    """
    check_boxes(anchors, "anchors")
    check_boxes(gt_boxes, "gt_boxes")
    matches = torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device)  # (N,)
    if gt_boxes.shape[0] == 0 or anchors.shape[0] == 0:
        return matches
    iou = box_iou(anchors, gt_boxes)  # (N, M)
    best_iou, best_gt = iou.max(dim=1)  # (N,), (N,): best box for each anchor
    positive = best_iou >= iou_threshold  # (N,)
    matches[positive] = best_gt[positive]
    best_anchor_of_each_gt = iou.argmax(dim=0)  # (M,) each box's best anchor
    for gt_index, anchor_index in enumerate(best_anchor_of_each_gt.tolist()):
        matches[anchor_index] = gt_index
    return matches
