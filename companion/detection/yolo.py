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

``yolo_mini`` is a small trainable detector in the style of the later YOLOs: a convolutional
backbone (no fully connected layers, unlike v1), one output grid at stride 8, ``A`` anchor boxes per
cell as in YOLOv2 (Redmon and Farhadi 2017) and YOLOv3 (Redmon and Farhadi 2018), and per anchor an
objectness logit, ``C`` independent class logits (sigmoid, as in YOLOv3) and four box numbers. Two
choices come from later, paper-less YOLOs (Ultralytics YOLOv5) because they train much faster in a
small budget: an object is assigned to its centre cell *and* the two neighbouring cells nearest to
its centre, to every anchor whose shape fits (width and height ratios below ``anchor_ratio_limit``),
and the centre offset is decoded as ``(2 sigmoid(t) - 0.5)`` cells so that a neighbour can reach it.
The box loss is ``1 - GIoU`` (Rezatofighi et al. 2019), and the objectness target of a positive is
the IoU of its predicted box with the object, so that scores rank boxes by their quality.

Taught in: book/03_detection/07_yolo.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from companion.detection.boxes import check_boxes
from companion.detection.nms import batched_nms

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
# yolo_mini: a small anchor-based YOLO-style detector
# --------------------------------------------------------------------------------------------------


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


class YOLOMini(nn.Module):
    """A small one-stage, anchor-based YOLO-style detector with torchvision's interface.

    Args:
        num_classes: classes including the background (torchvision counts it; no output is spent on it).
        anchors: ``(A, 2)`` anchor widths and heights in pixels.
        width: backbone width (see ``TinyBackbone``).
        anchor_ratio_limit: an anchor takes an object when neither side differs by more than this factor.
        score_threshold: detections scoring below this are dropped at inference.
        nms_threshold: IoU above which ``batched_nms`` removes a lower-scoring box of the same class.
        detections_per_image: most detections returned per image.
        box_weight, objectness_weight, class_weight: weights of the three losses.
    """

    def __init__(self, num_classes: int, anchors: Sequence[Sequence[float]] = ((22, 24), (30, 34), (42, 44)),
                 width: int = 16, anchor_ratio_limit: float = 2.0, score_threshold: float = 0.01,
                 nms_threshold: float = 0.5, detections_per_image: int = 100, box_weight: float = 2.0,
                 objectness_weight: float = 1.0, class_weight: float = 1.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background too, so it must be at least 2, got {num_classes}.")
        self.num_classes = num_classes
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32))  # (A, 2)
        self.backbone = TinyBackbone(width)
        self.stride = self.backbone.stride
        self.outputs_per_anchor = 5 + (num_classes - 1)  # box (4), objectness (1), classes (C)
        self.head = nn.Conv2d(self.backbone.out_channels, len(anchors) * self.outputs_per_anchor, 1)
        self.anchor_ratio_limit = anchor_ratio_limit
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.detections_per_image = detections_per_image
        self.box_weight, self.objectness_weight, self.class_weight = box_weight, objectness_weight, class_weight
        with torch.no_grad():  # start with few objects predicted: objectness prior of about 1 %
            bias = self.head.bias.unflatten(0, (len(anchors), self.outputs_per_anchor))  # (A, 5 + C) view
            bias[:, 4] = -4.6
            bias[:, 5:] = -2.0

    def decode(self, raw: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
        """Raw box outputs ``(B, H*W, A, 4)`` -> xyxy pixel boxes of the same shape.

        Centre: ``corner + (2 sigmoid(t_xy) - 0.5) * stride``, from half a cell before the cell to half a
        cell after it; size: ``anchor * (2 sigmoid(t_wh))^2``, at most four times the anchor.

        Args:
            raw: ``(B, H*W, A, 4)`` network outputs ``(t_x, t_y, t_w, t_h)``.
            corners: ``(H*W, 2)`` pixel ``(x, y)`` of each cell's top-left corner.
        """
        centre = corners[None, :, None, :] + (2 * raw[..., :2].sigmoid() - 0.5) * self.stride  # (B, HW, A, 2)
        size = self.anchors * (2 * raw[..., 2:4].sigmoid()).square()  # (B, HW, A, 2)
        return torch.cat([centre - size / 2, centre + size / 2], dim=-1)  # (B, HW, A, 4)

    def forward(self, images: torch.Tensor | Sequence[torch.Tensor],
                targets: Sequence[Target] | None = None) -> dict[str, torch.Tensor] | list[Target]:
        """Losses in training mode (``targets`` required), detections in eval mode."""
        images = images_as_batch(images)
        features = self.backbone(images)  # (B, c, h, w)
        _, _, height, width = features.shape
        output = self.head(features).flatten(2).transpose(1, 2)  # (B, h*w, A * (5 + C))
        output = output.unflatten(-1, (len(self.anchors), self.outputs_per_anchor))  # (B, h*w, A, 5 + C)
        corners = grid_corners(height, width, self.stride, output)  # (h*w, 2)
        boxes = self.decode(output[..., :4], corners)  # (B, h*w, A, 4)
        if self.training:
            if targets is None:
                raise ValueError("in training mode the model needs targets; call model.eval() for detections.")
            return self.compute_loss(output, boxes, targets, (height, width))
        return self.postprocess(output, boxes, images.shape[-2:])

    def assign(self, targets: Sequence[Target], grid_shape: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """The positive (image, cell, anchor) triples of a batch and the object each one learns.

        An object goes to its centre cell and to the two neighbouring cells (one left or right, one up
        or down) whose sides are closest to its centre, for every anchor whose width and height are
        within ``anchor_ratio_limit`` of the object's (the best anchor always qualifies). A triple
        claimed by two objects keeps the smaller one.

        Returns:
            ``image``, ``cell`` (flat index ``row * W + column``), ``anchor``, each ``(P,)`` int64, and
            the object's ``boxes`` ``(P, 4)`` and ``labels`` ``(P,)``.
        """
        height, width = grid_shape
        boxes = torch.cat([target["boxes"] for target in targets])  # (N, 4) all objects of the batch
        labels = torch.cat([target["labels"] for target in targets])  # (N,)
        image = torch.cat([torch.full((len(target["labels"]),), b, dtype=torch.int64)
                           for b, target in enumerate(targets)]).to(boxes.device)  # (N,)
        num_anchors = len(self.anchors)
        sizes = boxes[:, 2:] - boxes[:, :2]  # (N, 2)
        ratio = sizes[:, None, :] / self.anchors[None, :, :]  # (N, A, 2)
        worst = torch.max(ratio, 1 / ratio).amax(dim=-1)  # (N, A) the worse of the two sides
        fits = (worst < self.anchor_ratio_limit) | (worst == worst.amin(dim=1, keepdim=True))  # (N, A)
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / self.stride  # (N, 2) in cells
        cell_xy = centre.floor().long()  # (N, 2)
        step = torch.where(centre - cell_xy < 0.5, -1, 1)  # (N, 2) towards the nearer side
        zero = torch.zeros_like(step[:, 0])
        offsets = torch.stack([torch.stack([zero, zero], 1), torch.stack([step[:, 0], zero], 1),
                               torch.stack([zero, step[:, 1]], 1)], dim=1)  # (N, 3, 2)
        candidate_xy = cell_xy[:, None, :] + offsets  # (N, 3, 2)
        inside = ((candidate_xy[..., 0] >= 0) & (candidate_xy[..., 0] < width)
                  & (candidate_xy[..., 1] >= 0) & (candidate_xy[..., 1] < height))  # (N, 3)
        valid = inside[:, :, None] & fits[:, None, :]  # (N, 3, A)
        obj, which, anchor = torch.nonzero(valid, as_tuple=True)  # (Q,) candidates
        cell = candidate_xy[obj, which, 1] * width + candidate_xy[obj, which, 0]  # (Q,)
        slot = (image[obj] * height * width + cell) * num_anchors + anchor  # (Q,) one id per (b, cell, a)
        # Smallest object first, then group by slot: the first candidate of each slot wins.
        order = sizes[obj].prod(dim=1).argsort(stable=True)
        order = order[slot[order].argsort(stable=True)]
        slot_sorted = slot[order]
        first = torch.ones_like(slot_sorted, dtype=torch.bool)
        first[1:] = slot_sorted[1:] != slot_sorted[:-1]
        keep = order[first]  # (P,)
        obj = obj[keep]
        return image[obj], cell[keep], anchor[keep], boxes[obj], labels[obj]

    def compute_loss(self, output: torch.Tensor, boxes: torch.Tensor, targets: Sequence[Target],
                     grid_shape: tuple[int, int]) -> dict[str, torch.Tensor]:
        """GIoU box loss and class BCE on positives; objectness BCE everywhere (target: IoU on positives).

        Each sum is divided by the number of positives in the batch.
        """
        image, cell, anchor, matched_boxes, matched_labels = self.assign(targets, grid_shape)
        positives = max(len(image), 1)
        predicted = boxes[image, cell, anchor]  # (P, 4)
        giou, iou = paired_giou_and_iou(predicted, matched_boxes)  # (P,) each
        objectness_target = torch.zeros_like(output[..., 4])  # (B, HW, A)
        objectness_target[image, cell, anchor] = iou.detach().clamp(min=0)
        one_hot = F.one_hot(matched_labels - 1, self.num_classes - 1).to(output)  # (P, C)
        box_loss = (1 - giou).sum() / positives
        class_loss = F.binary_cross_entropy_with_logits(output[image, cell, anchor, 5:], one_hot,
                                                        reduction="sum") / positives
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
        scores = output[..., 4:5].sigmoid() * output[..., 5:].sigmoid()  # (B, HW, A, C)
        detections = []
        for b in range(output.shape[0]):
            flat_scores = scores[b].flatten()  # (HW * A * C,)
            keep = torch.nonzero(flat_scores > self.score_threshold).flatten()
            keep = keep[flat_scores[keep].argsort(descending=True, stable=True)[:1000]]
            box_index = keep // (self.num_classes - 1)  # index into the (HW * A) boxes
            labels = keep % (self.num_classes - 1) + 1  # (D,) in 1..C
            image_boxes = boxes[b].reshape(-1, 4)[box_index]  # (D, 4)
            image_scores = flat_scores[keep]  # (D,)
            kept = batched_nms(image_boxes, image_scores, labels, self.nms_threshold)[:self.detections_per_image]
            detections.append({"boxes": image_boxes[kept], "scores": image_scores[kept], "labels": labels[kept]})
        return detections


def yolo_mini(num_classes: int = 6, **kwargs) -> YOLOMini:
    """The small YOLO-style detector used in the book (about 266,000 parameters at ``width=16``).

    Args:
        num_classes: classes including the background (``FashionScenes(classes="distinct")`` has 6).
        **kwargs: passed to ``YOLOMini``.
    """
    return YOLOMini(num_classes=num_classes, **kwargs)
