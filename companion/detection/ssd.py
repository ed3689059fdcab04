"""SSD, the single-shot multibox detector (Liu et al. 2016), small enough to train on a CPU.

SSD has no proposal stage. A convolutional backbone produces feature maps at several resolutions;
every position of every map carries a few *default boxes* of fixed shapes, and a 3x3 convolution on
each map predicts, for every default box, ``C + 1`` class scores (background included) and four
offsets that move the default box onto the object. One forward pass gives all the detections.

- **Default boxes.** With ``m`` feature maps, map ``k`` (``k = 1..m``, finest first) gets the scale
  ``s_k = s_min + (s_max - s_min) (k - 1) / (m - 1)`` (a fraction of the image side). For each aspect
  ratio ``a`` (``a = w / h``, as in the paper) a box of width ``s_k sqrt(a)`` and height
  ``s_k / sqrt(a)``; for ``a = 1`` one more box of scale ``sqrt(s_k s_{k+1})``. Boxes are centred on
  the middle of each cell, ``((j + 0.5) / f_k, (i + 0.5) / f_k)``. ``aspect_ratios`` lists the ratios
  above one; each ``r`` brings both ``r`` and ``1 / r``, as in torchvision's ``DefaultBoxGenerator``,
  and so ``2 + 2 len(aspect_ratios[k])`` boxes per position.
- **Matching.** A default box is positive for the ground-truth box it overlaps most if that IoU is at
  least 0.5; each ground-truth box also takes its best default box (the rule of
  ``companion.detection.matcher.match_anchors``, here for a whole batch at once).
- **Encoding.** A positive's target is its ground truth as offsets from the default box, with SSD's
  "variances" ``(0.1, 0.1, 0.2, 0.2)``, i.e. ``BoxCoder(weights=(10, 10, 5, 5))``.
- **MultiBox loss.** Softmax cross-entropy over ``C + 1`` classes on the positives and on the hardest
  negatives only (at most ``neg_pos_ratio`` negatives per positive, by decreasing loss: hard negative
  mining), plus Smooth L1 on the positives' offsets, both divided by the number of positives.
- **Inference.** Softmax, then per class: drop scores below ``score_threshold``, keep the
  ``topk_candidates`` best, decode; per-class NMS (``batched_nms``); keep ``detections_per_img``.

The loss and the post-processing follow torchvision's ``models.detection.ssd.SSD`` step by step; the
backbone is our own small one (the paper truncates VGG-16 and adds extra convolution layers), with an
optional top-down path into its finest map (as in DSSD and FPN; see ``SSDBackbone``).

Taught in: book/03_detection/06_ssd.ipynb.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from companion.detection.box_coder import BoxCoder
from companion.detection.boxes import box_iou
from companion.detection.nms import batched_nms

Target = dict[str, torch.Tensor]


def default_box_scales(num_maps: int, s_min: float = 0.2, s_max: float = 0.9) -> list[float]:
    """SSD's scales: ``s_k`` linear from ``s_min`` to ``s_max`` over the maps, plus one more step.

    Args:
        num_maps: number of feature maps ``m``.
        s_min: scale of the finest map, a fraction of the image side.
        s_max: scale of the coarsest map.

    Returns:
        ``m + 1`` scales: ``s_1..s_m`` and ``s_{m+1} = s_m + (s_max - s_min) / (m - 1)``, which only
        serves the extra ratio-1 box ``sqrt(s_m s_{m+1})`` of the last map (with one map, ``s_max``).
    """
    if num_maps < 1 or not 0 < s_min <= s_max:
        raise ValueError(f"need num_maps >= 1 and 0 < s_min <= s_max, got num_maps={num_maps}, "
                         f"s_min={s_min}, s_max={s_max}.")
    if num_maps == 1:
        return [s_min, s_max]
    step = (s_max - s_min) / (num_maps - 1)
    return [s_min + step * k for k in range(num_maps + 1)]


def default_boxes(feature_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int],
                  scales: Sequence[float], aspect_ratios: Sequence[Sequence[float]],
                  dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """All default boxes of all feature maps, in image pixels.

    Args:
        feature_sizes: ``(H_k, W_k)`` of each feature map, finest first.
        image_size: ``(H, W)`` of the input image in pixels.
        scales: ``m + 1`` scales (see ``default_box_scales``).
        aspect_ratios: per map, the ratios above one; each ``r`` adds the boxes ``r`` and ``1 / r``.
        dtype: dtype of the result.
        device: device of the result.

    Returns:
        ``(sum_k H_k W_k A_k, 4)`` boxes in ``xyxy`` pixels, ``A_k = 2 + 2 len(aspect_ratios[k])``;
        map by map, position-major (row by row), the ``A_k`` boxes of a position next to each other in
        the order ``s_k``, ``sqrt(s_k s_{k+1})``, then ``(r, 1 / r)`` for each ratio ``r``. Boxes may
        extend past the image border.
    """
    if len(scales) != len(feature_sizes) + 1 or len(aspect_ratios) != len(feature_sizes):
        raise ValueError(f"need one scale per feature map plus one ({len(feature_sizes) + 1}) and one tuple "
                         f"of aspect ratios per map ({len(feature_sizes)}), got {len(scales)} scales and "
                         f"{len(aspect_ratios)} ratio tuples.")
    image_h, image_w = image_size
    per_map = []
    for k, (grid_h, grid_w) in enumerate(feature_sizes):
        s_k = scales[k]
        s_extra = math.sqrt(scales[k] * scales[k + 1])
        sizes = [(s_k, s_k), (s_extra, s_extra)]  # (w, h) as fractions of the image
        for ratio in aspect_ratios[k]:
            sizes += [(s_k * math.sqrt(ratio), s_k / math.sqrt(ratio)),
                      (s_k / math.sqrt(ratio), s_k * math.sqrt(ratio))]
        wh = torch.tensor(sizes, dtype=dtype, device=device) * torch.tensor([image_w, image_h], dtype=dtype,
                                                                             device=device)  # (A, 2) pixels
        centre_x = (torch.arange(grid_w, dtype=dtype, device=device) + 0.5) * (image_w / grid_w)  # (W_k,)
        centre_y = (torch.arange(grid_h, dtype=dtype, device=device) + 0.5) * (image_h / grid_h)  # (H_k,)
        grid_y, grid_x = torch.meshgrid(centre_y, centre_x, indexing="ij")  # (H_k, W_k) each
        centres = torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 1, 2)  # (H_k*W_k, 1, 2)
        boxes = torch.cat([centres - wh / 2, centres + wh / 2], dim=-1)  # (H_k*W_k, A, 4)
        per_map.append(boxes.reshape(-1, 4))  # (H_k*W_k*A, 4)
    return torch.cat(per_map)  # (sum_k H_k*W_k*A_k, 4)


def hard_negative_mining(loss: torch.Tensor, labels: torch.Tensor, neg_pos_ratio: float = 3.0) -> torch.Tensor:
    """Choose the negatives the classification loss keeps: the hardest ones, ``neg_pos_ratio`` per positive.

    Almost every default box is background; training on all of them would drown the few positives.
    SSD sorts each image's negatives by their classification loss and keeps the worst
    ``neg_pos_ratio * (number of positives)`` of them.

    Args:
        loss: ``(B, N)`` per-default-box classification loss.
        labels: ``(B, N)`` int64 targets, ``0`` for background.
        neg_pos_ratio: negatives kept per positive in each image.

    Returns:
        ``(B, N)`` bool, True for the selected negatives (never a positive).
    """
    if loss.shape != labels.shape or loss.dim() != 2:
        raise ValueError(f"loss and labels must both be (B, N), got {tuple(loss.shape)} and {tuple(labels.shape)}.")
    positive = labels > 0  # (B, N)
    num_negative = (neg_pos_ratio * positive.sum(dim=1, keepdim=True)).long().clamp(max=labels.shape[1])  # (B, 1)
    negative_loss = loss.detach().masked_fill(positive, -math.inf)  # (B, N) positives sort last
    k = int(num_negative.max())  # only the k hardest per image can be chosen: topk, not a full sort
    hardest = negative_loss.topk(k, dim=1).indices  # (B, k) hardest negatives first
    chosen = torch.arange(k, device=loss.device) < num_negative  # (B, k) the first num_negative of each row
    selected = torch.zeros_like(positive)  # (B, N)
    selected.scatter_(1, hardest, chosen)
    return selected & ~positive  # (B, N)


def multibox_loss(cls_logits: torch.Tensor, bbox_regression: torch.Tensor, cls_targets: torch.Tensor,
                  box_targets: torch.Tensor, neg_pos_ratio: float = 3.0) -> dict[str, torch.Tensor]:
    """SSD's MultiBox loss: hard-mined softmax cross-entropy plus Smooth L1 on the positives.

    Args:
        cls_logits: ``(B, N, C + 1)`` class scores per default box.
        bbox_regression: ``(B, N, 4)`` predicted offsets.
        cls_targets: ``(B, N)`` int64 matched labels, ``0`` for background.
        box_targets: ``(B, N, 4)`` encoded matched boxes (only the positives' rows are used).
        neg_pos_ratio: negatives kept per positive.

    Returns:
        ``{"bbox_regression": ..., "classification": ...}``, each summed over the boxes used and divided by
        the number of positives in the batch (at least one).
    """
    num_classes = cls_logits.shape[-1]
    cls_loss = F.cross_entropy(cls_logits.reshape(-1, num_classes), cls_targets.reshape(-1),
                               reduction="none").reshape(cls_targets.shape)  # (B*N, C+1) -> (B, N)
    positive = cls_targets > 0  # (B, N)
    negative = hard_negative_mining(cls_loss, cls_targets, neg_pos_ratio)  # (B, N)
    num_positive = positive.sum().clamp(min=1)  # ()
    box_loss = F.smooth_l1_loss(bbox_regression[positive], box_targets[positive], reduction="sum")  # (P, 4) -> ()
    return {"bbox_regression": box_loss / num_positive,
            "classification": (cls_loss[positive].sum() + cls_loss[negative].sum()) / num_positive}


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (no bias), batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class SSDBackbone(nn.Module):
    """A compact backbone returning feature maps at strides 4, 8, 16 (and more with more stages).

    The stem halves the resolution twice (to stride 4); each further stage halves it once more, like
    the extra layers SSD appends to its truncated VGG-16. Our objects are small (the visible parts of
    the occluded ones down to a few pixels), and a stride-4 map taken straight from the stem sees
    little context, so ``top_down=True`` adds a light top-down path as in the later SSD variant DSSD
    (Fu et al. 2017, with deconvolutions) and in FPN (Lin et al. 2017): the stride-8 map, projected by a
    1x1 convolution and upsampled (nearest), is added to the stride-4 map, followed by a 3x3
    convolution. The original SSD predicts from each map as the forward pass produced it.

    Args:
        channels: ``(c_stem, c_4, c_8, c_16, ...)``: the stem's first convolution, then each feature
            map's channels, finest (stride 4) first.
        top_down: whether to add the stride-8 map into the stride-4 map.
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 96), top_down: bool = True) -> None:
        super().__init__()
        if len(channels) < 3:
            raise ValueError(f"channels needs the stem's width and at least two feature maps, got {channels}.")
        stem, first, *rest = channels
        self.stem = nn.Sequential(conv_bn_relu(3, stem, 2), conv_bn_relu(stem, first, 2),
                                  conv_bn_relu(first, first))  # (B, c_4, H/4, W/4)
        self.stages = nn.ModuleList(
            nn.Sequential(conv_bn_relu(previous, channels, 2), conv_bn_relu(channels, channels))
            for previous, channels in itertools.pairwise([first, *rest]))
        self.top_down = top_down
        if top_down:
            self.lateral = nn.Conv2d(rest[0], first, 1)
            self.smooth = conv_bn_relu(first, first)
        self.out_channels = [first, *rest]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)  # (B, c_4, H/4, W/4)
        features = [x]
        for stage in self.stages:
            x = stage(x)  # (B, C_k, H/2^(k+2), W/2^(k+2))
            features.append(x)
        if self.top_down:
            coarse = F.interpolate(self.lateral(features[1]), size=features[0].shape[-2:], mode="nearest")
            features[0] = self.smooth(features[0] + coarse)  # (B, c_4, H/4, W/4)
        return features


class SSD(nn.Module):
    """A single-shot multibox detector with torchvision's detection interface.

    ``model.train(); losses = model(images, targets)`` returns ``{"bbox_regression", "classification"}``;
    ``model.eval(); detections = model(images)`` returns one ``{"boxes", "scores", "labels"}`` dict per
    image.

    Args:
        backbone: a module mapping ``(B, 3, H, W)`` to a list of feature maps, with ``out_channels``.
        num_classes: object classes plus the background.
        scales: ``len(feature maps) + 1`` default box scales (``default_box_scales``).
        aspect_ratios: per feature map, the ratios above one (each also adds its inverse).
        image_mean: per-channel mean subtracted from the ``[0, 1]`` input.
        image_std: per-channel standard deviation it is divided by.
        iou_threshold: default boxes with at least this IoU with a ground-truth box are positive.
        neg_pos_ratio: hard negatives kept per positive.
        score_threshold: detections scoring at most this are dropped.
        topk_candidates: best detections kept per class before NMS.
        nms_threshold: IoU above which NMS removes a box of the same class.
        detections_per_img: detections returned per image, best first.
        background_prior: the background probability every default box starts with: the class heads'
            biases are set so that the softmax gives the background this probability and the object
            classes equal shares of the rest (the "prior" initialisation of RetinaNet, Lin et al. 2017;
            SSD's paper does not say how it initialises them). It keeps the first steps' loss from being
            dominated by thousands of confidently wrong background boxes. ``None`` keeps PyTorch's
            default initialisation.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, scales: Sequence[float],
                 aspect_ratios: Sequence[Sequence[float]], image_mean: Sequence[float] = (0.5, 0.5, 0.5),
                 image_std: Sequence[float] = (0.25, 0.25, 0.25), iou_threshold: float = 0.5,
                 neg_pos_ratio: float = 3.0, score_threshold: float = 0.01, topk_candidates: int = 100,
                 nms_threshold: float = 0.45, detections_per_img: int = 100,
                 background_prior: float | None = 0.99) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background too and must be >= 2, got {num_classes}.")
        if len(aspect_ratios) != len(backbone.out_channels) or len(scales) != len(aspect_ratios) + 1:
            raise ValueError(f"the backbone gives {len(backbone.out_channels)} feature maps: pass that many tuples "
                             f"of aspect_ratios and one more scale, got {len(aspect_ratios)} and {len(scales)}.")
        self.backbone = backbone
        self.num_classes = num_classes
        self.scales = list(scales)
        self.aspect_ratios = [tuple(r) for r in aspect_ratios]
        self.num_anchors = [2 + 2 * len(r) for r in self.aspect_ratios]  # A_k per position
        self.classification_heads = nn.ModuleList(
            nn.Conv2d(c, a * num_classes, 3, padding=1) for c, a in zip(backbone.out_channels, self.num_anchors))
        self.regression_heads = nn.ModuleList(
            nn.Conv2d(c, a * 4, 3, padding=1) for c, a in zip(backbone.out_channels, self.num_anchors))
        if background_prior is not None:
            if not 0 < background_prior < 1:
                raise ValueError(f"background_prior must be a probability in (0, 1) or None, got {background_prior}.")
            # softmax([b, 0, ..., 0])[0] = e^b / (e^b + C) = prior  <=>  b = log(prior C / (1 - prior))
            background_bias = math.log(background_prior * (num_classes - 1) / (1 - background_prior))
            for head, anchors_per_position in zip(self.classification_heads, self.num_anchors):
                bias = head.bias.detach().reshape(anchors_per_position, num_classes)  # (A, C+1) view
                bias.zero_()
                bias[:, 0] = background_bias
        self.register_buffer("image_mean", torch.tensor(image_mean).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(image_std).reshape(1, 3, 1, 1), persistent=False)
        self.box_coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))  # SSD's variances 0.1 and 0.2
        self.iou_threshold = iou_threshold
        self.neg_pos_ratio = neg_pos_ratio
        self.score_threshold = score_threshold
        self.topk_candidates = topk_candidates
        self.nms_threshold = nms_threshold
        self.detections_per_img = detections_per_img

    @staticmethod
    def _flatten(output: torch.Tensor, values: int) -> torch.Tensor:
        """``(B, A * V, H, W)`` head output -> ``(B, H * W * A, V)``, in the default boxes' order."""
        batch, _, height, width = output.shape
        output = output.reshape(batch, -1, values, height, width)  # (B, A, V, H, W)
        return output.permute(0, 3, 4, 1, 2).reshape(batch, -1, values)  # (B, H*W*A, V)

    def head_outputs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw predictions and the default boxes.

        Args:
            images: ``(B, 3, H, W)`` in ``[0, 1]``.

        Returns:
            ``cls_logits`` ``(B, N, C + 1)``, ``bbox_regression`` ``(B, N, 4)`` and the default boxes
            ``(N, 4)`` in ``xyxy`` pixels.
        """
        features = self.backbone((images - self.image_mean) / self.image_std)  # list of (B, C_k, H_k, W_k)
        cls_logits = torch.cat([self._flatten(head(f), self.num_classes)
                                for head, f in zip(self.classification_heads, features)], dim=1)  # (B, N, C+1)
        bbox_regression = torch.cat([self._flatten(head(f), 4)
                                     for head, f in zip(self.regression_heads, features)], dim=1)  # (B, N, 4)
        anchors = default_boxes([tuple(f.shape[-2:]) for f in features], tuple(images.shape[-2:]), self.scales,
                                self.aspect_ratios, dtype=images.dtype, device=images.device)  # (N, 4)
        return cls_logits, bbox_regression, anchors

    def match_targets(self, targets: Sequence[Target], anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class and box targets for every default box of every image.

        The rule is ``match_anchors``' (IoU at least ``iou_threshold``, plus each ground-truth box's best
        default box; a later box wins a shared best default box), with one IoU matrix for the whole batch.

        Returns:
            ``cls_targets`` ``(B, N)`` int64 (0 = background) and ``box_targets`` ``(B, N, 4)`` (the encoded
            matched box; zeros for the background).
        """
        num_anchors = anchors.shape[0]
        counts = [target["boxes"].shape[0] for target in targets]
        iou_all = box_iou(anchors, torch.cat([target["boxes"] for target in targets]))  # (N, sum_i K_i)
        cls_targets, matched_boxes = [], []
        for target, iou in zip(targets, iou_all.split(counts, dim=1)):  # iou: (N, K)
            matches = torch.full((num_anchors,), -1, dtype=torch.int64, device=anchors.device)  # (N,)
            if iou.shape[1] > 0:
                best_iou, best_gt = iou.max(dim=1)  # (N,), (N,): best box for each default box
                matches = torch.where(best_iou >= self.iou_threshold, best_gt, matches)
                for gt_index, anchor_index in enumerate(iou.argmax(dim=0).tolist()):  # each box's best
                    matches[anchor_index] = gt_index
            positive = matches >= 0  # (N,)
            labels = torch.zeros(num_anchors, dtype=torch.int64, device=anchors.device)  # (N,)
            labels[positive] = target["labels"][matches[positive]]
            boxes = torch.zeros_like(anchors)  # (N, 4)
            boxes[positive] = target["boxes"][matches[positive]].to(anchors.dtype)
            cls_targets.append(labels)
            matched_boxes.append(boxes)
        cls_targets = torch.stack(cls_targets)  # (B, N)
        positive = cls_targets > 0  # (B, N)
        box_targets = torch.zeros(len(targets), num_anchors, 4, dtype=anchors.dtype, device=anchors.device)
        anchors_per_box = anchors.expand(len(targets), num_anchors, 4)  # (B, N, 4)
        box_targets[positive] = self.box_coder.encode_single(torch.stack(matched_boxes)[positive],
                                                             anchors_per_box[positive])  # (P, 4)
        return cls_targets, box_targets  # (B, N), (B, N, 4)

    def postprocess(self, cls_logits: torch.Tensor, bbox_regression: torch.Tensor, anchors: torch.Tensor,
                    image_size: tuple[int, int]) -> list[Target]:
        """Softmax, per-class threshold and top-k, decode, clip, per-class NMS, best ``detections_per_img``."""
        scores_all = F.softmax(cls_logits, dim=-1)  # (B, N, C+1)
        image_h, image_w = image_size
        detections = []
        for scores, deltas in zip(scores_all, bbox_regression):
            boxes = self.box_coder.decode_single(deltas, anchors)  # (N, 4)
            boxes = torch.stack([boxes[:, 0].clamp(0, image_w), boxes[:, 1].clamp(0, image_h),
                                 boxes[:, 2].clamp(0, image_w), boxes[:, 3].clamp(0, image_h)], dim=1)  # (N, 4)
            kept_boxes, kept_scores, kept_labels = [], [], []
            for label in range(1, self.num_classes):
                score = scores[:, label]  # (N,)
                keep = score > self.score_threshold
                score, box = score[keep], boxes[keep]
                score, order = score.topk(min(self.topk_candidates, score.shape[0]))  # best first
                kept_boxes.append(box[order])
                kept_scores.append(score)
                kept_labels.append(torch.full_like(order, label))
            boxes, scores, labels = torch.cat(kept_boxes), torch.cat(kept_scores), torch.cat(kept_labels)
            keep = batched_nms(boxes, scores, labels, self.nms_threshold)[: self.detections_per_img]
            detections.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return detections

    def forward(self, images: torch.Tensor | Sequence[torch.Tensor],
                targets: Sequence[Target] | None = None) -> dict[str, torch.Tensor] | list[Target]:
        """Losses in training mode, detections in eval mode (see the class docstring).

        Args:
            images: ``(B, 3, H, W)`` in ``[0, 1]``, or a list of ``(3, H, W)`` images of one size.
            targets: in training mode, one ``{"boxes": (K, 4), "labels": (K,)}`` dict per image.
        """
        if not isinstance(images, torch.Tensor):
            if len({tuple(image.shape) for image in images}) > 1:
                raise ValueError("this SSD takes images of one size; resize them first (e.g. to 96x96).")
            images = torch.stack(list(images))  # (B, 3, H, W)
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}.")
        cls_logits, bbox_regression, anchors = self.head_outputs(images)
        if self.training:
            if targets is None or len(targets) != images.shape[0]:
                raise ValueError("in training mode pass one target dict per image: model(images, targets).")
            cls_targets, box_targets = self.match_targets(targets, anchors)
            return multibox_loss(cls_logits, bbox_regression, cls_targets, box_targets, self.neg_pos_ratio)
        return self.postprocess(cls_logits, bbox_regression, anchors, tuple(images.shape[-2:]))


def ssd_mini(num_classes: int = 6, s_min: float = 0.15, s_max: float = 0.5,
             aspect_ratios: Sequence[Sequence[float]] = ((2.0, 3.0),) * 3, top_down: bool = True,
             **kwargs) -> SSD:
    """The small SSD of the notebook: three maps (strides 4, 8, 16: 24, 12 and 6 cells on 96x96 inputs).

    Args:
        num_classes: object classes plus the background.
        s_min: default box scale of the stride-4 map (a fraction of the image side).
        s_max: default box scale of the stride-16 map.
        aspect_ratios: per map, the ratios above one.
        top_down: whether the backbone adds the stride-8 map into the stride-4 map (``SSDBackbone``).
        **kwargs: passed on to ``SSD`` (thresholds, ``detections_per_img``, ...).
    """
    backbone = SSDBackbone(top_down=top_down)
    scales = default_box_scales(len(backbone.out_channels), s_min, s_max)
    return SSD(backbone, num_classes, scales, aspect_ratios, **kwargs)
