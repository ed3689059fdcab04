"""YOLO: detection as one regression over a grid of cells.

YOLO (Redmon, Divvala, Girshick and Farhadi, CVPR 2016) divides the image into an ``S x S`` grid.
The cell that contains an object's centre is *responsible* for it. Each cell predicts ``B`` boxes
``(x, y, w, h)`` with a confidence each, and one set of ``C`` class probabilities: an
``S x S x (5B + C)`` tensor (``7 x 7 x 30`` on PASCAL VOC, with ``S = 7``, ``B = 2``, ``C = 20``).
``(x, y)`` is the centre's offset inside its cell, ``(w, h)`` the size relative to the image, and the
network predicts ``sqrt(w)`` and ``sqrt(h)`` so that an error on a small box costs more than the same
error on a large one. Of the ``B`` predictors of a responsible cell, the one whose current box has the
highest IoU with the object is trained on it; its confidence target is that IoU. The loss is a sum of
squares, with ``lambda_coord = 5`` on the coordinates and ``lambda_noobj = 0.5`` on the confidence of
predictors that are responsible for nothing. ``yolo_v1_targets`` and ``yolo_v1_loss`` write this out.

``yolo_mini`` is a small trainable detector in the style of the later YOLOs, anchor-free as YOLOX
(Ge, Liu, Wang, Li and Sun, arXiv 2021): a convolutional backbone (no fully connected layers, unlike
v1) whose top-down path ends at stride 4 (``companion.detection.yolo_parts.PyramidBackbone``), one box
per cell decoded as a centre offset from the cell's centre and a size ``stride * exp(t)``, a
decoupled head (one branch for the classes, one for box and objectness) and ``C`` independent
sigmoid class logits (as in YOLOv3, Redmon and Farhadi 2018). An object's positives are the cells
within ``center_radius`` strides of its centre (the ``3 x 3`` block of YOLOX's multiple positives,
without its SimOTA selection). The box loss is ``1 - GIoU`` (Rezatofighi et al. 2019), and the
objectness target of a positive is the IoU of its predicted box with the object, as v1's confidence
target, so that scores rank boxes by their quality.

Taught in: book/03_detection/07_yolo.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from companion.detection.boxes import check_boxes
from companion.detection.nms import batched_nms
from companion.detection.yolo_parts import (  # noqa: F401 (ConvBNAct, TinyBackbone: re-exported for fcos)
    ConvBNAct,
    PyramidBackbone,
    TinyBackbone,
    grid_corners,
    images_as_batch,
    paired_giou_and_iou,
)

Target = dict[str, torch.Tensor]

# --------------------------------------------------------------------------------------------------
# YOLO v1: the grid formulation
# --------------------------------------------------------------------------------------------------


def yolo_v1_targets(boxes: torch.Tensor, labels: torch.Tensor, image_size: tuple[int, int],
                    grid_size: int = 7, num_classes: int = 20) -> torch.Tensor:
    """Encode one image's objects as YOLO v1's ``S x S`` target grid.

    Args:
        boxes: ``(K, 4)`` xyxy boxes in pixels.
        labels: ``(K,)`` int64 labels in ``1..num_classes``.
        image_size: ``(height, width)`` of the image in pixels.
        grid_size: ``S``.
        num_classes: ``C``.

    Returns:
        ``(S, S, 5 + C)`` float: per cell (row, column) ``[has_object, x, y, w, h, one-hot class]``, with
        ``(x, y)`` the centre's offset in the cell in ``[0, 1)`` and ``(w, h)`` relative to the image.
        A cell holds one object: when two centres fall in the same cell, the first one listed is kept
        (a limit of v1 that the paper states).
    """
    check_boxes(boxes, "boxes")
    if labels.shape != (boxes.shape[0],):
        raise ValueError(f"labels must have shape ({boxes.shape[0]},), one per box, got {tuple(labels.shape)}.")
    if labels.numel() and (labels.min() < 1 or labels.max() > num_classes):
        raise ValueError(f"labels must lie in 1..{num_classes} (0 is the background), "
                         f"got {labels.min().item()}..{labels.max().item()}.")
    height, width = image_size
    target = boxes.new_zeros(grid_size, grid_size, 5 + num_classes)  # (S, S, 5 + C)
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2 / width * grid_size  # (K,) in grid units
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2 / height * grid_size  # (K,)
    for k in range(boxes.shape[0]):
        column = min(int(centre_x[k]), grid_size - 1)
        row = min(int(centre_y[k]), grid_size - 1)
        if target[row, column, 0] == 1:
            continue  # the cell already holds an object
        target[row, column, 0] = 1.0
        target[row, column, 1] = centre_x[k] - column
        target[row, column, 2] = centre_y[k] - row
        target[row, column, 3] = (boxes[k, 2] - boxes[k, 0]) / width
        target[row, column, 4] = (boxes[k, 3] - boxes[k, 1]) / height
        target[row, column, 5 + labels[k] - 1] = 1.0
    return target


def _v1_cell_boxes_xyxy(xywh: torch.Tensor, grid_size: int) -> torch.Tensor:
    """``(..., S, S, 4)`` cell-relative ``(x, y, w, h)`` to xyxy in image units (the image is 1 x 1)."""
    rows = torch.arange(grid_size, device=xywh.device, dtype=xywh.dtype)
    offset_y, offset_x = torch.meshgrid(rows, rows, indexing="ij")  # (S, S) each
    centre_x = (xywh[..., 0] + offset_x) / grid_size
    centre_y = (xywh[..., 1] + offset_y) / grid_size
    half_w, half_h = xywh[..., 2] / 2, xywh[..., 3] / 2
    return torch.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], dim=-1)


def yolo_v1_loss(predictions: torch.Tensor, targets: torch.Tensor, num_boxes: int = 2,
                 lambda_coord: float = 5.0, lambda_noobj: float = 0.5) -> torch.Tensor:
    """YOLO v1's sum-squared loss (Redmon et al. 2016, equation 3), summed and divided by the batch size.

    Args:
        predictions: ``(B, S, S, 5 * num_boxes + C)``: per cell ``num_boxes`` groups
            ``[x, y, sqrt(w), sqrt(h), confidence]`` then ``C`` class probabilities.
        targets: ``(B, S, S, 5 + C)`` from ``yolo_v1_targets``.
        num_boxes: predictors per cell (``B`` in the paper).
        lambda_coord: weight of the coordinate terms.
        lambda_noobj: weight of the confidence of predictors responsible for no object.

    Returns:
        The scalar loss.
    """
    batch, grid_size, _, channels = predictions.shape
    num_classes = channels - 5 * num_boxes
    if targets.shape != (batch, grid_size, grid_size, 5 + num_classes):
        raise ValueError(f"targets must have shape {(batch, grid_size, grid_size, 5 + num_classes)} to match "
                         f"predictions {tuple(predictions.shape)} with num_boxes={num_boxes}, "
                         f"got {tuple(targets.shape)}.")
    boxes = predictions[..., :5 * num_boxes].unflatten(-1, (num_boxes, 5))  # (B, S, S, nb, 5)
    has_object = targets[..., 0]  # (B, S, S)

    # Which predictor is responsible: the one whose current box overlaps the object most.
    predicted_xywh = torch.cat([boxes[..., :2], boxes[..., 2:4].square()], dim=-1)  # (B, S, S, nb, 4)
    predicted_xyxy = _v1_cell_boxes_xyxy(predicted_xywh.movedim(3, 0), grid_size)  # (nb, B, S, S, 4)
    target_xyxy = _v1_cell_boxes_xyxy(targets[..., 1:5], grid_size)  # (B, S, S, 4)
    top_left = torch.max(predicted_xyxy[..., :2], target_xyxy[..., :2])  # (nb, B, S, S, 2)
    bottom_right = torch.min(predicted_xyxy[..., 2:], target_xyxy[..., 2:])  # (nb, B, S, S, 2)
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=-1)  # (nb, B, S, S)
    area_predicted = (predicted_xyxy[..., 2:] - predicted_xyxy[..., :2]).clamp(min=0).prod(dim=-1)
    area_target = (target_xyxy[..., 2:] - target_xyxy[..., :2]).prod(dim=-1)  # (B, S, S)
    iou = (intersection / (area_predicted + area_target - intersection).clamp(min=1e-9)).detach()
    iou = iou.movedim(0, -1)  # (B, S, S, nb)
    best = iou.argmax(dim=-1, keepdim=True)  # (B, S, S, 1)
    responsible = torch.zeros_like(iou).scatter_(-1, best, 1.0) * has_object[..., None]  # (B, S, S, nb)

    target_xy = targets[..., None, 1:3]  # (B, S, S, 1, 2)
    target_sqrt_wh = targets[..., None, 3:5].sqrt()  # (B, S, S, 1, 2)
    coordinate = ((boxes[..., :2] - target_xy).square().sum(-1)
                  + (boxes[..., 2:4] - target_sqrt_wh).square().sum(-1))  # (B, S, S, nb)
    confidence = boxes[..., 4]  # (B, S, S, nb)
    loss = lambda_coord * (responsible * coordinate).sum()
    loss = loss + (responsible * (confidence - iou).square()).sum()
    loss = loss + lambda_noobj * ((1 - responsible) * confidence.square()).sum()
    class_error = (predictions[..., 5 * num_boxes:] - targets[..., 5:]).square().sum(-1)  # (B, S, S)
    loss = loss + (has_object * class_error).sum()
    return loss / batch


# --------------------------------------------------------------------------------------------------
# yolo_mini: a small anchor-free YOLO-style detector
# --------------------------------------------------------------------------------------------------


class YOLOMini(nn.Module):
    """A small one-stage, anchor-free YOLO-style detector with torchvision's interface.

    Every cell of a stride-4 grid predicts one box (four numbers), an objectness logit and one
    sigmoid logit per class. The box is decoded as a centre offset from the cell's centre and a size,

        centre = cell centre + stride * (t_x, t_y),    size = stride * exp(t_w, t_h),

    the anchor-free parametrisation of YOLOX (Ge et al. 2021). A cell is a positive for an object when
    its centre lies within ``center_radius`` strides of the object's centre (YOLOX's "centre prior",
    without its dynamic SimOTA selection); a cell claimed by two objects takes the smaller one.

    Args:
        num_classes: classes including the background (torchvision counts it; no output is spent on it).
        width: backbone width (see ``PyramidBackbone``).
        center_radius: positives lie within this many strides of an object's centre, on both axes.
        size_prior: the box size in pixels that the initial head predicts.
        score_threshold: detections scoring below this are dropped at inference.
        nms_threshold: IoU above which ``batched_nms`` removes a lower-scoring box of the same class.
        detections_per_image: most detections returned per image.
        box_weight, objectness_weight, class_weight: weights of the three losses.
    """

    def __init__(self, num_classes: int, width: int = 16, center_radius: float = 1.5, size_prior: float = 24.0,
                 score_threshold: float = 0.01, nms_threshold: float = 0.5, detections_per_image: int = 100,
                 box_weight: float = 5.0, objectness_weight: float = 1.0, class_weight: float = 1.0,
                 decoupled: bool = True) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background too, so it must be at least 2, got {num_classes}.")
        if center_radius < 0.5:
            raise ValueError(f"center_radius must be at least 0.5 so that an object's own cell qualifies, "
                             f"got {center_radius}.")
        self.num_classes = num_classes
        self.backbone = PyramidBackbone(width)
        self.stride = self.backbone.stride
        channels = self.backbone.out_channels
        self.decoupled = decoupled
        if decoupled:  # YOLOX's decoupled head: one branch for the classes, one for box and objectness
            self.class_tower = ConvBNAct(channels, channels)
            self.class_head = nn.Conv2d(channels, num_classes - 1, 1)
            self.tower = ConvBNAct(channels, channels)
            self.head = nn.Conv2d(channels, 5, 1)
        else:
            self.tower = ConvBNAct(channels, channels)
            self.head = nn.Conv2d(channels, 5 + (num_classes - 1), 1)  # box (4), objectness (1), classes (C)
        self.center_radius = center_radius
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.detections_per_image = detections_per_image
        self.box_weight, self.objectness_weight, self.class_weight = box_weight, objectness_weight, class_weight
        with torch.no_grad():
            self.head.bias.zero_()
            self.head.bias[2:4] = math.log(size_prior / self.stride)  # initial boxes of size_prior pixels
            self.head.bias[4] = -4.6  # objectness prior of about 1 %
            if decoupled:
                self.class_head.bias.fill_(-2.0)
            else:
                self.head.bias[5:] = -2.0

    def raw_outputs(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, H/4 * W/4, 5 + C)``: per cell ``(t_x, t_y, t_w, t_h, objectness, classes)``."""
        features = self.backbone(images)  # (B, c, H/4, W/4)
        output = self.head(self.tower(features))  # (B, 5 or 5 + C, H/4, W/4)
        if self.decoupled:
            output = torch.cat([output, self.class_head(self.class_tower(features))], dim=1)  # (B, 5 + C, ., .)
        return output.flatten(2).transpose(1, 2)

    def decode(self, raw: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """Raw box outputs ``(B, L, 4)`` and cell centres ``(L, 2)`` -> ``(B, L, 4)`` xyxy pixel boxes."""
        centre = centres + raw[..., :2] * self.stride  # (B, L, 2)
        size = raw[..., 2:4].clamp(max=8.0).exp() * self.stride  # (B, L, 2)
        return torch.cat([centre - size / 2, centre + size / 2], dim=-1)

    def forward(self, images: torch.Tensor | Sequence[torch.Tensor],
                targets: Sequence[Target] | None = None) -> dict[str, torch.Tensor] | list[Target]:
        """Losses in training mode (``targets`` required), detections in eval mode."""
        images = images_as_batch(images)
        output = self.raw_outputs(images)  # (B, L, 5 + C)
        height, width = images.shape[-2] // self.stride, images.shape[-1] // self.stride
        centres = grid_corners(height, width, self.stride, output) + self.stride / 2  # (L, 2)
        boxes = self.decode(output[..., :4], centres)  # (B, L, 4)
        if self.training:
            if targets is None:
                raise ValueError("in training mode the model needs targets; call model.eval() for detections.")
            return self.compute_loss(output, boxes, targets, centres)
        return self.postprocess(output, boxes, images.shape[-2:])

    def assign(self, targets: Sequence[Target], centres: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The positive (image, cell) pairs of a batch and the object each one learns.

        Args:
            targets: one target dict per image.
            centres: ``(L, 2)`` pixel centres of the cells.

        Returns:
            ``image`` and ``cell`` (flat index ``row * W + column``), each ``(P,)`` int64, and the object's
            ``boxes`` ``(P, 4)`` and ``labels`` ``(P,)``.
        """
        images, cells, boxes, labels = [], [], [], []
        for b, target in enumerate(targets):
            object_boxes = target["boxes"]  # (K, 4)
            if object_boxes.shape[0] == 0:
                continue
            object_centres = (object_boxes[:, :2] + object_boxes[:, 2:]) / 2  # (K, 2)
            distance = (centres[:, None, :] - object_centres[None]).abs().amax(dim=-1)  # (L, K) in pixels
            area = (object_boxes[:, 2:] - object_boxes[:, :2]).prod(dim=-1)  # (K,)
            candidate_area = torch.where(distance <= self.center_radius * self.stride, area[None], torch.inf)
            smallest, matched = candidate_area.min(dim=1)  # (L,) each: the smallest candidate object wins
            cell = torch.nonzero(torch.isfinite(smallest)).flatten()  # (P_b,)
            images.append(torch.full_like(cell, b))
            cells.append(cell)
            boxes.append(object_boxes[matched[cell]])
            labels.append(target["labels"][matched[cell]])
        if not cells:
            empty = torch.zeros(0, dtype=torch.int64, device=centres.device)
            return empty, empty, centres.new_zeros(0, 4), empty
        return torch.cat(images), torch.cat(cells), torch.cat(boxes), torch.cat(labels)

    def compute_loss(self, output: torch.Tensor, boxes: torch.Tensor, targets: Sequence[Target],
                     centres: torch.Tensor) -> dict[str, torch.Tensor]:
        """GIoU box loss and class BCE on positives; objectness BCE everywhere (target: IoU on positives).

        Each sum is divided by the number of positives in the batch.
        """
        image, cell, matched_boxes, matched_labels = self.assign(targets, centres)
        positives = max(len(image), 1)
        giou, iou = paired_giou_and_iou(boxes[image, cell], matched_boxes)  # (P,) each
        objectness_target = torch.zeros_like(output[..., 4])  # (B, L)
        objectness_target[image, cell] = iou.detach().clamp(min=0)
        one_hot = F.one_hot(matched_labels - 1, self.num_classes - 1).to(output)  # (P, C)
        box_loss = (1 - giou).sum() / positives
        class_loss = F.binary_cross_entropy_with_logits(output[image, cell, 5:], one_hot, reduction="sum") / positives
        objectness_loss = F.binary_cross_entropy_with_logits(output[..., 4], objectness_target,
                                                             reduction="sum") / positives
        return {"loss_box": self.box_weight * box_loss,
                "loss_objectness": self.objectness_weight * objectness_loss,
                "loss_classifier": self.class_weight * class_loss}

    @torch.no_grad()
    def postprocess(self, output: torch.Tensor, boxes: torch.Tensor, image_size: Sequence[int]) -> list[Target]:
        """Score = objectness x class probability; threshold, keep the best 1000, per-class NMS."""
        height, width = image_size
        boxes = torch.stack([boxes[..., 0].clamp(0, width), boxes[..., 1].clamp(0, height),
                             boxes[..., 2].clamp(0, width), boxes[..., 3].clamp(0, height)], dim=-1)  # inside
        scores = output[..., 4:5].sigmoid() * output[..., 5:].sigmoid()  # (B, L, C)
        num_object_classes = self.num_classes - 1
        detections = []
        for b in range(output.shape[0]):
            flat_scores = scores[b].flatten()  # (L * C,)
            keep = torch.nonzero(flat_scores > self.score_threshold).flatten()
            keep = keep[flat_scores[keep].argsort(descending=True, stable=True)[:1000]]
            image_boxes = boxes[b][keep // num_object_classes]  # (D, 4)
            labels = keep % num_object_classes + 1  # (D,) in 1..C
            image_scores = flat_scores[keep]  # (D,)
            kept = batched_nms(image_boxes, image_scores, labels, self.nms_threshold)[:self.detections_per_image]
            detections.append({"boxes": image_boxes[kept], "scores": image_scores[kept], "labels": labels[kept]})
        return detections


def yolo_mini(num_classes: int = 6, **kwargs) -> YOLOMini:
    """The small YOLO-style detector used in the book.

    Args:
        num_classes: classes including the background (``FashionScenes(classes="distinct")`` has 6).
        **kwargs: passed to ``YOLOMini``.
    """
    return YOLOMini(num_classes=num_classes, **kwargs)
