"""FCOS: an anchor-free one-stage detector that regresses box sides from every location.

FCOS (Tian, Shen, Chen and He, ICCV 2019) drops anchor boxes. Every location ``(x, y)`` of a feature
map (mapped back to image pixels) that falls inside an object's box is a positive for that object and
predicts four distances to the box's sides, ``(l, t, r, b) = (x - x1, y - y1, x2 - x, y2 - y)``, a
class score per class and a *centerness*

    centerness = sqrt( min(l, r) / max(l, r) * min(t, b) / max(t, b) ),

which is 1 at the box centre and falls to 0 at its border. At inference the class score is
multiplied by the predicted centerness, which pushes down the poorly placed boxes predicted from
near an object's edge before non-maximum suppression. Classification uses the focal loss
(Lin et al. 2017), which down-weights the many easy background locations:

    FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t).

``fcos_mini`` is a one-level version for small images: the same backbone as ``yolo_mini``
(``companion.detection.yolo.TinyBackbone``, stride 8) instead of ResNet + FPN, one convolution per
branch instead of four, batch norm instead of group norm. Two refinements from the FCOS authors'
later versions are used: *centre sampling* (only locations within ``center_radius`` strides of the
box centre are positives) and a GIoU box loss (Rezatofighi et al. 2019) in place of the IoU loss,
weighted by the centerness target. When a location lies in several boxes it takes the smallest.

Taught in: book/03_detection/07_yolo.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from companion.detection.nms import batched_nms
from companion.detection.yolo import (
    ConvBNAct,
    TinyBackbone,
    grid_corners,
    images_as_batch,
    paired_giou_and_iou,
)

Target = dict[str, torch.Tensor]


def sigmoid_focal_loss(inputs: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0,
                       reduction: str = "none") -> torch.Tensor:
    """The focal loss of Lin et al. (2017) on logits, equal to ``torchvision.ops.sigmoid_focal_loss``.

    ``p_t`` is the predicted probability of the true answer (``p`` for a positive, ``1 - p`` for a
    negative); the binary cross-entropy ``-log(p_t)`` is multiplied by ``(1 - p_t)^gamma``, small for
    well-classified examples, and by ``alpha`` for positives and ``1 - alpha`` for negatives.

    Args:
        inputs: logits of any shape.
        targets: same shape, 0 or 1 (soft values in between are accepted).
        alpha: weight of the positives in ``[0, 1]``; a negative value switches the weighting off.
        gamma: focusing exponent; 0 gives the (alpha-weighted) binary cross-entropy.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
        The loss per element (same shape as ``inputs``) or its mean or sum.
    """
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}.")
    if inputs.shape != targets.shape:
        raise ValueError(f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} must have the same shape.")
    probability = torch.sigmoid(inputs)
    cross_entropy = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")  # -log(p_t)
    p_t = probability * targets + (1 - probability) * (1 - targets)
    loss = cross_entropy * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def fcos_targets(points: torch.Tensor, boxes: torch.Tensor, stride: float,
                 center_radius: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Which object each location learns, and its ``(l, t, r, b)`` distances.

    Args:
        points: ``(L, 2)`` pixel ``(x, y)`` of the locations.
        boxes: ``(K, 4)`` xyxy boxes of one image.
        stride: the feature map's stride in pixels.
        center_radius: a positive must lie within this many strides of the box centre (and inside it).

    Returns:
        ``matched`` ``(L,)`` int64: the object index, or -1 for the background; ``ltrb`` ``(L, 4)``: the
        distances to the matched box (zeros for the background).
    """
    if boxes.shape[0] == 0:
        return (torch.full((points.shape[0],), -1, dtype=torch.int64, device=points.device),
                points.new_zeros(points.shape[0], 4))
    x, y = points[:, 0, None], points[:, 1, None]  # (L, 1) each
    ltrb = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], dim=-1)  # (L, K, 4)
    inside_box = ltrb.amin(dim=-1) > 0  # (L, K)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # (K, 2)
    near_centre = ((points[:, None, :] - centre[None]).abs() < center_radius * stride).all(dim=-1)  # (L, K)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (K,)
    candidate_area = torch.where(inside_box & near_centre, area[None, :], torch.inf)  # (L, K)
    smallest_area, matched = candidate_area.min(dim=1)  # (L,) each: the smallest box wins
    matched = torch.where(torch.isinf(smallest_area), -1, matched)
    ltrb = ltrb[torch.arange(points.shape[0], device=points.device), matched.clamp(min=0)]  # (L, 4)
    return matched, torch.where(matched[:, None] >= 0, ltrb, 0.0)


def centerness_target(ltrb: torch.Tensor) -> torch.Tensor:
    """``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` of ``(N, 4)`` positive distances -> ``(N,)``."""
    left_right, top_bottom = ltrb[:, [0, 2]], ltrb[:, [1, 3]]  # (N, 2) each
    return torch.sqrt((left_right.amin(-1) / left_right.amax(-1)) * (top_bottom.amin(-1) / top_bottom.amax(-1)))


class FCOSMini(nn.Module):
    """A small one-level FCOS detector with torchvision's interface.

    Args:
        num_classes: classes including the background (no output is spent on it).
        width: backbone width (see ``TinyBackbone``).
        center_radius: centre-sampling radius in strides.
        score_threshold: detections scoring below this are dropped at inference.
        nms_threshold: IoU above which ``batched_nms`` removes a lower-scoring box of the same class.
        detections_per_image: most detections returned per image.
        focal_alpha, focal_gamma: focal-loss parameters (the paper's 0.25 and 2).
    """

    def __init__(self, num_classes: int, width: int = 16, center_radius: float = 1.5,
                 score_threshold: float = 0.05, nms_threshold: float = 0.6, detections_per_image: int = 100,
                 focal_alpha: float = 0.25, focal_gamma: float = 2.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background too, so it must be at least 2, got {num_classes}.")
        self.num_classes = num_classes
        self.backbone = TinyBackbone(width)
        self.stride = self.backbone.stride
        channels = self.backbone.out_channels
        self.classification_tower = ConvBNAct(channels, channels)
        self.regression_tower = ConvBNAct(channels, channels)
        self.cls_logits = nn.Conv2d(channels, num_classes - 1, 1)
        self.bbox_reg = nn.Conv2d(channels, 4, 1)
        self.bbox_ctrness = nn.Conv2d(channels, 1, 1)
        self.center_radius, self.score_threshold = center_radius, score_threshold
        self.nms_threshold, self.detections_per_image = nms_threshold, detections_per_image
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        with torch.no_grad():
            self.cls_logits.bias.fill_(-4.6)  # prior probability 0.01, as RetinaNet and FCOS

    def forward(self, images: torch.Tensor | Sequence[torch.Tensor],
                targets: Sequence[Target] | None = None) -> dict[str, torch.Tensor] | list[Target]:
        """Losses in training mode (``targets`` required), detections in eval mode."""
        images = images_as_batch(images)
        features = self.backbone(images)  # (B, c, h, w)
        _, _, height, width = features.shape
        classification = self.classification_tower(features)
        regression = self.regression_tower(features)
        class_logits = self.cls_logits(classification).flatten(2).transpose(1, 2)  # (B, h*w, C)
        ltrb = (self.bbox_reg(regression).clamp(max=6.0).exp() * self.stride).flatten(2).transpose(1, 2)  # (B, hw, 4)
        centerness_logits = self.bbox_ctrness(regression).flatten(2).transpose(1, 2)[..., 0]  # (B, h*w)
        points = grid_corners(height, width, self.stride, ltrb) + self.stride / 2  # (h*w, 2) cell centres
        if self.training:
            if targets is None:
                raise ValueError("in training mode the model needs targets; call model.eval() for detections.")
            return self.compute_loss(class_logits, ltrb, centerness_logits, points, targets)
        return self.postprocess(class_logits, ltrb, centerness_logits, points, images.shape[-2:])

    def compute_loss(self, class_logits: torch.Tensor, ltrb: torch.Tensor, centerness_logits: torch.Tensor,
                     points: torch.Tensor, targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """Focal loss on all locations; centerness-weighted GIoU and centerness BCE on positives."""
        matched, target_ltrb, class_target = [], [], []
        for target in targets:
            index, distances = fcos_targets(points, target["boxes"], self.stride, self.center_radius)
            labels = torch.zeros_like(index)  # (L,) 0 for the background
            labels[index >= 0] = target["labels"][index[index >= 0]]
            matched.append(index)
            target_ltrb.append(distances)
            class_target.append(F.one_hot(labels, self.num_classes)[:, 1:])  # (L, C) background row dropped
        matched = torch.stack(matched)  # (B, L)
        target_ltrb = torch.stack(target_ltrb)  # (B, L, 4)
        class_target = torch.stack(class_target).to(class_logits)  # (B, L, C)
        positive = matched >= 0  # (B, L)
        positives = max(int(positive.sum()), 1)
        classification_loss = sigmoid_focal_loss(class_logits, class_target, self.focal_alpha, self.focal_gamma,
                                                 reduction="sum") / positives
        points_positive = points.expand(ltrb.shape[0], -1, -1)[positive]  # (P, 2)
        predicted, wanted = ltrb[positive], target_ltrb[positive]  # (P, 4) each
        predicted_boxes = torch.cat([points_positive - predicted[:, :2], points_positive + predicted[:, 2:]], 1)
        wanted_boxes = torch.cat([points_positive - wanted[:, :2], points_positive + wanted[:, 2:]], 1)  # (P, 4)
        giou, _ = paired_giou_and_iou(predicted_boxes, wanted_boxes)  # (P,)
        centerness = centerness_target(wanted)  # (P,)
        box_loss = ((1 - giou) * centerness).sum() / centerness.sum().clamp(min=1e-6)
        centerness_loss = F.binary_cross_entropy_with_logits(centerness_logits[positive], centerness,
                                                             reduction="sum") / positives
        return {"loss_classifier": classification_loss, "loss_box": box_loss, "loss_centerness": centerness_loss}

    @torch.no_grad()
    def postprocess(self, class_logits: torch.Tensor, ltrb: torch.Tensor, centerness_logits: torch.Tensor,
                    points: torch.Tensor, image_size: Sequence[int]) -> list[Target]:
        """Score = sqrt(class probability x centerness); threshold, keep the best 1000, per-class NMS."""
        height, width = image_size
        boxes = torch.cat([points - ltrb[..., :2], points + ltrb[..., 2:]], dim=-1)  # (B, L, 4)
        boxes = torch.stack([boxes[..., 0].clamp(0, width), boxes[..., 1].clamp(0, height),
                             boxes[..., 2].clamp(0, width), boxes[..., 3].clamp(0, height)], dim=-1)
        scores = torch.sqrt(class_logits.sigmoid() * centerness_logits.sigmoid()[..., None])  # (B, L, C)
        num_object_classes = self.num_classes - 1
        detections = []
        for b in range(scores.shape[0]):
            flat_scores = scores[b].flatten()  # (L * C,)
            keep = torch.nonzero(flat_scores > self.score_threshold).flatten()
            keep = keep[flat_scores[keep].argsort(descending=True, stable=True)[:1000]]
            image_boxes = boxes[b][keep // num_object_classes]  # (D, 4)
            labels = keep % num_object_classes + 1  # (D,) in 1..C
            image_scores = flat_scores[keep]
            kept = batched_nms(image_boxes, image_scores, labels, self.nms_threshold)[:self.detections_per_image]
            detections.append({"boxes": image_boxes[kept], "scores": image_scores[kept], "labels": labels[kept]})
        return detections


def fcos_mini(num_classes: int = 6, **kwargs) -> FCOSMini:
    """The small anchor-free detector used in the book, for comparison with ``yolo_mini``.

    Args:
        num_classes: classes including the background (``FashionScenes(classes="distinct")`` has 6).
        **kwargs: passed to ``FCOSMini``.
    """
    return FCOSMini(num_classes=num_classes, **kwargs)
