"""Box encoding: describe a box by four offsets from a reference box (an anchor or a proposal).

A network regresses numbers of order one far more easily than raw pixel coordinates. R-CNN
(Girshick et al. 2014) and then Fast and Faster R-CNN therefore predict, for a reference box with
centre ``(x_a, y_a)`` and size ``(w_a, h_a)``, the offsets to the target box ``(x, y, w, h)``:

    t_x = w_x (x - x_a) / w_a,    t_y = w_y (y - y_a) / h_a,
    t_w = w_w log(w / w_a),       t_h = w_h log(h / h_a).

Centre offsets are measured in units of the reference box's size, so they do not depend on the
scale of the object; sizes are compared by a log-ratio, so doubling and halving are symmetric. The
weights ``(w_x, w_y, w_w, w_h)`` rescale the targets (torchvision's Faster R-CNN uses
``(1, 1, 1, 1)`` in the RPN and ``(10, 10, 5, 5)`` in the box head). Decoding inverts the formulas;
``t_w`` and ``t_h`` are clipped at ``bbox_xform_clip`` first so that ``exp`` cannot overflow.

The arithmetic follows ``torchvision.models.detection._utils.BoxCoder`` step by step, so both give
the same numbers.

Taught in: book/03_detection/02_anchors_and_matching.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from companion.detection.boxes import check_boxes


def _widths_heights_centres(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Width, height and centre of ``xyxy`` boxes, each ``(N,)``, computed as torchvision does."""
    widths = boxes[:, 2] - boxes[:, 0]  # (N,)
    heights = boxes[:, 3] - boxes[:, 1]  # (N,)
    centre_x = boxes[:, 0] + 0.5 * widths  # (N,)
    centre_y = boxes[:, 1] + 0.5 * heights  # (N,)
    return widths, heights, centre_x, centre_y


class BoxCoder:
    """Encode boxes as offsets ``(t_x, t_y, t_w, t_h)`` from reference boxes, and decode them back.

    Args:
        weights: ``(w_x, w_y, w_w, w_h)``, positive; the offsets are multiplied by them.
        bbox_xform_clip: largest ``t_w / w_w`` and ``t_h / w_h`` used when decoding (``log(1000 / 16)``:
            a box at most 62.5 times wider or taller than its reference).
    """

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 bbox_xform_clip: float = math.log(1000.0 / 16)) -> None:
        if len(weights) != 4 or any(not w > 0 for w in weights):
            raise ValueError(f"weights must be four positive numbers (w_x, w_y, w_w, w_h), got {tuple(weights)!r}.")
        self.weights = tuple(float(w) for w in weights)
        self.bbox_xform_clip = bbox_xform_clip

    def encode_single(self, reference_boxes: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
        """Offsets that move each proposal (anchor) onto its reference (ground-truth) box.

        Args:
            reference_boxes: ``(N, 4)`` target boxes in ``xyxy`` format (the matched ground truth).
            proposals: ``(N, 4)`` boxes the offsets are measured from (anchors or proposals), with
                positive width and height.

        Returns:
            ``(N, 4)`` offsets ``(t_x, t_y, t_w, t_h)``, in ``reference_boxes``' dtype.
        """
        check_boxes(reference_boxes, "reference_boxes")
        check_boxes(proposals, "proposals")
        if reference_boxes.shape[0] != proposals.shape[0]:
            raise ValueError(f"reference_boxes has {reference_boxes.shape[0]} rows but proposals has "
                             f"{proposals.shape[0]}; pass one matched reference box per proposal.")
        weight_x, weight_y, weight_w, weight_h = self.weights
        anchor_w, anchor_h, anchor_cx, anchor_cy = _widths_heights_centres(proposals)  # (N,) each
        target_w, target_h, target_cx, target_cy = _widths_heights_centres(reference_boxes)  # (N,) each
        t_x = weight_x * (target_cx - anchor_cx) / anchor_w  # (N,)
        t_y = weight_y * (target_cy - anchor_cy) / anchor_h  # (N,)
        t_w = weight_w * torch.log(target_w / anchor_w)  # (N,)
        t_h = weight_h * torch.log(target_h / anchor_h)  # (N,)
        return torch.stack([t_x, t_y, t_w, t_h], dim=1).to(reference_boxes.dtype)  # (N, 4)

    def decode_single(self, rel_codes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Apply offsets to reference boxes; the inverse of ``encode_single``.

        Args:
            rel_codes: ``(N, 4 * K)`` offsets, ``K`` boxes per reference box (e.g. one per class).
            boxes: ``(N, 4)`` reference boxes in ``xyxy`` format.

        Returns:
            ``(N, 4 * K)`` decoded boxes in ``xyxy`` format, in ``rel_codes``' dtype.
        """
        check_boxes(boxes, "boxes")
        if rel_codes.dim() != 2 or rel_codes.shape[1] % 4 != 0 or rel_codes.shape[0] != boxes.shape[0]:
            raise ValueError(f"rel_codes must have shape ({boxes.shape[0]}, 4 * K) to match boxes, "
                             f"got {tuple(rel_codes.shape)}.")
        boxes = boxes.to(rel_codes.dtype)
        widths, heights, centre_x, centre_y = _widths_heights_centres(boxes)  # (N,) each
        weight_x, weight_y, weight_w, weight_h = self.weights
        t_x = rel_codes[:, 0::4] / weight_x  # (N, K)
        t_y = rel_codes[:, 1::4] / weight_y  # (N, K)
        t_w = (rel_codes[:, 2::4] / weight_w).clamp(max=self.bbox_xform_clip)  # (N, K) exp cannot overflow
        t_h = (rel_codes[:, 3::4] / weight_h).clamp(max=self.bbox_xform_clip)  # (N, K)

        pred_cx = t_x * widths[:, None] + centre_x[:, None]  # (N, K)
        pred_cy = t_y * heights[:, None] + centre_y[:, None]  # (N, K)
        pred_w = torch.exp(t_w) * widths[:, None]  # (N, K)
        pred_h = torch.exp(t_h) * heights[:, None]  # (N, K)
        corners = [pred_cx - 0.5 * pred_w, pred_cy - 0.5 * pred_h, pred_cx + 0.5 * pred_w, pred_cy + 0.5 * pred_h]
        return torch.stack(corners, dim=2).flatten(1)  # (N, K, 4) -> (N, 4 * K)

    def encode(self, reference_boxes: list[torch.Tensor], proposals: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """``encode_single`` for a batch: one ``(N_i, 4)`` pair per image.

        Returns:
            A tuple of ``(N_i, 4)`` offsets, one per image.
        """
        if len(reference_boxes) != len(proposals):
            raise ValueError(f"reference_boxes has {len(reference_boxes)} images but proposals has "
                             f"{len(proposals)}; pass one tensor of each per image.")
        boxes_per_image = [len(b) for b in reference_boxes]
        codes = self.encode_single(torch.cat(list(reference_boxes)), torch.cat(list(proposals)))  # (sum N_i, 4)
        return codes.split(boxes_per_image, 0)

    def decode(self, rel_codes: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """``decode_single`` for a batch whose reference boxes come one tensor per image.

        Args:
            rel_codes: ``(sum N_i, 4 * K)`` offsets (any shape with that many elements).
            boxes: one ``(N_i, 4)`` tensor of reference boxes per image.

        Returns:
            ``(sum N_i, K, 4)`` decoded boxes (``(0, 4)`` when there are none, as torchvision).
        """
        if not isinstance(boxes, (list, tuple)):
            raise ValueError(f"boxes must be a list of (N_i, 4) tensors, one per image, got "
                             f"{type(boxes).__name__}; use decode_single for a single tensor.")
        total = sum(b.shape[0] for b in boxes)
        if total > 0:
            rel_codes = rel_codes.reshape(total, -1)  # (sum N_i, 4 * K)
        pred_boxes = self.decode_single(rel_codes, torch.cat(list(boxes)))
        if total > 0:
            pred_boxes = pred_boxes.reshape(total, -1, 4)  # (sum N_i, K, 4)
        return pred_boxes
