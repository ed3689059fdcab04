"""The Region Proposal Network (RPN) of Faster R-CNN (Ren, He, Girshick & Sun 2015).

R-CNN and Fast R-CNN took their candidate boxes from selective search, a hand-made algorithm that
ran on the CPU and cost about as much as the detector itself. Faster R-CNN learns the proposals
instead, with a small fully convolutional network that shares the backbone's feature maps:

1. **Head.** A 3x3 convolution (with ReLU) slides over each feature map; two 1x1 convolutions then
   predict, at every position and for each of its ``A`` anchors, an *objectness* logit (object or
   background) and four box offsets ``(t_x, t_y, t_w, t_h)`` from the anchor (see ``box_coder.py``).
2. **Proposals.** The offsets are decoded into boxes, clipped to the image and the tiny ones
   dropped; on each feature map only the ``pre_nms_top_n`` highest objectness scores are kept; NMS at
   ``nms_thresh`` (per feature map) removes duplicates, and the ``post_nms_top_n`` best boxes are the
   proposals handed to the second stage. No gradient flows through the proposals.
3. **Training.** Each anchor is matched to the ground truth by IoU: positive at ``>= 0.7``, negative
   below ``0.3``, ignored in between, and every ground-truth box also claims its best anchor(s).
   ``batch_size_per_image`` anchors per image (256; at most half positive) are sampled at random; the
   loss is the binary cross-entropy of their objectness plus a smooth L1 loss (``beta = 1/9``) on the
   offsets of the positive ones, summed and divided by the number of sampled anchors.

Every step follows ``torchvision.models.detection.rpn.RegionProposalNetwork`` and keeps its parameter
names (``head.conv``, ``head.cls_logits``, ``head.bbox_pred``), so a torchvision state dict loads and,
on the same inputs, both give the same proposals. Sampling uses ``torch.randperm`` in the same order
as torchvision, so the same seed gives the same losses. The parts come from this package:
``AnchorGenerator``, ``BoxCoder``, ``Matcher``, ``box_iou`` and ``batched_nms``.

Taught in: book/03_detection/05_rcnn_family.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from companion.detection.anchors import AnchorGenerator
from companion.detection.box_coder import BoxCoder
from companion.detection.boxes import box_iou, check_boxes
from companion.detection.matcher import Matcher
from companion.detection.nms import batched_nms


class RPNHead(nn.Module):
    """The RPN's head: a shared 3x3 convolution, then objectness and box offsets per anchor.

    The module names match torchvision's ``RPNHead`` (``conv.0.0`` is the first 3x3 convolution,
    followed by its ReLU), so its state dict loads unchanged.

    Args:
        in_channels: channels of every feature map.
        num_anchors: anchors per position ``A``.
        conv_depth: number of 3x3 convolution + ReLU blocks before the two predictors.
    """

    def __init__(self, in_channels: int, num_anchors: int, conv_depth: int = 1) -> None:
        super().__init__()
        if in_channels < 1 or num_anchors < 1 or conv_depth < 1:
            raise ValueError(f"in_channels, num_anchors and conv_depth must be positive, got {in_channels}, "
                             f"{num_anchors} and {conv_depth}.")
        self.conv = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True))
            for _ in range(conv_depth)])
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1)  # one logit per anchor
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1)  # four offsets per anchor
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):  # torchvision's initialisation
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Objectness logits ``(B, A, H_k, W_k)`` and offsets ``(B, 4A, H_k, W_k)`` for each map ``k``."""
        objectness, box_deltas = [], []
        for feature in features:
            hidden = self.conv(feature)  # (B, C, H_k, W_k)
            objectness.append(self.cls_logits(hidden))  # (B, A, H_k, W_k)
            box_deltas.append(self.bbox_pred(hidden))  # (B, 4A, H_k, W_k)
        return objectness, box_deltas


def flatten_head_outputs(objectness: list[torch.Tensor], box_deltas: list[torch.Tensor]
                         ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Put the head's outputs in the anchors' order: feature map, then row, column, anchor.

    Args:
        objectness: per map ``(B, A, H_k, W_k)``.
        box_deltas: per map ``(B, 4A, H_k, W_k)``, the channels ordered anchor by anchor.

    Returns:
        ``objectness`` ``(B, N)``, ``box_deltas`` ``(B, N, 4)`` with ``N = sum_k H_k W_k A``, and the
        number of anchors of each map.
    """
    flat_objectness, flat_deltas, per_level = [], [], []
    for logits, deltas in zip(objectness, box_deltas):
        batch, anchors, height, width = logits.shape
        if deltas.shape != (batch, 4 * anchors, height, width):
            raise ValueError(f"box_deltas must have 4 channels per objectness channel: got objectness "
                             f"{tuple(logits.shape)} and box_deltas {tuple(deltas.shape)}.")
        flat_objectness.append(logits.permute(0, 2, 3, 1).reshape(batch, -1))  # (B, H*W*A)
        deltas = deltas.reshape(batch, anchors, 4, height, width).permute(0, 3, 4, 1, 2)  # (B, H, W, A, 4)
        flat_deltas.append(deltas.reshape(batch, -1, 4))  # (B, H*W*A, 4)
        per_level.append(height * width * anchors)
    return torch.cat(flat_objectness, dim=1), torch.cat(flat_deltas, dim=1), per_level


def clip_boxes_to_image(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Clamp ``(N, 4)`` ``xyxy`` boxes to an image of size ``(height, width)``."""
    height, width = image_size
    x = boxes[:, 0::2].clamp(min=0, max=width)  # (N, 2) x1, x2
    y = boxes[:, 1::2].clamp(min=0, max=height)  # (N, 2) y1, y2
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1)  # (N, 4)


def remove_small_boxes(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """Indices ``(K,)`` of the boxes whose width and height are both at least ``min_size``."""
    widths = boxes[:, 2] - boxes[:, 0]  # (N,)
    heights = boxes[:, 3] - boxes[:, 1]  # (N,)
    return torch.where((widths >= min_size) & (heights >= min_size))[0]  # (K,)


def select_proposals(proposals: torch.Tensor, objectness: torch.Tensor, image_sizes: Sequence[tuple[int, int]],
                     num_anchors_per_level: Sequence[int], pre_nms_top_n: int, post_nms_top_n: int,
                     nms_thresh: float, score_thresh: float = 0.0, min_size: float = 1e-3
                     ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Turn every decoded anchor into a short list of proposals per image.

    Args:
        proposals: ``(B, N, 4)`` decoded boxes, one per anchor.
        objectness: ``(B, N)`` logits.
        image_sizes: ``(height, width)`` of each image before padding (boxes are clipped to it).
        num_anchors_per_level: anchors of each feature map (they sum to ``N``).
        pre_nms_top_n: boxes kept per image *and feature map* before NMS, by objectness.
        post_nms_top_n: boxes kept per image after NMS.
        nms_thresh: IoU threshold of the NMS, applied within each feature map.
        score_thresh: boxes with a probability below this are dropped.
        min_size: boxes narrower or shorter than this (pixels) are dropped.

    Returns:
        Per image, ``(P, 4)`` proposals and their ``(P,)`` objectness probabilities, best first.
    """
    objectness = objectness.detach()  # proposals are not differentiated through
    levels = torch.cat([torch.full((n,), level, dtype=torch.int64, device=proposals.device)
                        for level, n in enumerate(num_anchors_per_level)])  # (N,) feature map of each anchor
    # Top pre_nms_top_n anchors of each feature map, so the large maps do not crowd out the small ones.
    top_indices, offset = [], 0
    for level_scores in objectness.split(list(num_anchors_per_level), dim=1):  # (B, N_k) each
        k = min(pre_nms_top_n, level_scores.shape[1])
        top_indices.append(level_scores.topk(k, dim=1).indices + offset)  # (B, k)
        offset += level_scores.shape[1]
    top_indices = torch.cat(top_indices, dim=1)  # (B, K)
    batch_index = torch.arange(proposals.shape[0], device=proposals.device)[:, None]  # (B, 1)
    boxes_all = proposals[batch_index, top_indices]  # (B, K, 4)
    scores_all = torch.sigmoid(objectness[batch_index, top_indices])  # (B, K)
    levels_all = levels[top_indices]  # (B, K)

    final_boxes, final_scores = [], []
    for boxes, scores, level, image_size in zip(boxes_all, scores_all, levels_all, image_sizes):
        boxes = clip_boxes_to_image(boxes, image_size)  # (K, 4)
        keep = remove_small_boxes(boxes, min_size)
        boxes, scores, level = boxes[keep], scores[keep], level[keep]
        keep = torch.where(scores >= score_thresh)[0]
        boxes, scores, level = boxes[keep], scores[keep], level[keep]
        keep = batched_nms(boxes, scores, level, nms_thresh)[:post_nms_top_n]  # NMS within each map
        final_boxes.append(boxes[keep])  # (P, 4)
        final_scores.append(scores[keep])  # (P,)
    return final_boxes, final_scores


def assign_targets_to_anchors(anchors: list[torch.Tensor], gt_boxes: list[torch.Tensor], matcher: Matcher
                              ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Label every anchor 1 (object), 0 (background) or -1 (ignored) and pick its ground-truth box.

    Args:
        anchors: per image ``(N, 4)``.
        gt_boxes: per image ``(M, 4)`` ground-truth boxes (``M`` may be 0: all anchors are background).
        matcher: decides positives (``>= high_threshold``), negatives and ignored anchors.

    Returns:
        Per image, ``labels`` ``(N,)`` float32 and ``matched_gt_boxes`` ``(N, 4)`` (for a negative or
        ignored anchor, some ground-truth box or zeros; its offsets are never used).
    """
    labels, matched_boxes = [], []
    for anchors_per_image, boxes in zip(anchors, gt_boxes):
        if boxes.numel() == 0:  # an image without objects: every anchor is background
            device = anchors_per_image.device
            labels.append(torch.zeros(anchors_per_image.shape[0], dtype=torch.float32, device=device))
            matched_boxes.append(torch.zeros_like(anchors_per_image, dtype=torch.float32))
            continue
        matches = matcher(box_iou(boxes, anchors_per_image))  # (N,) gt index, -1 or -2
        matched_boxes.append(boxes[matches.clamp(min=0)])  # (N, 4)
        label = (matches >= 0).to(torch.float32)  # (N,)
        label[matches == Matcher.BETWEEN_THRESHOLDS] = -1.0  # ignored in the loss
        labels.append(label)
    return labels, matched_boxes


def sample_anchors(labels: list[torch.Tensor], batch_size_per_image: int, positive_fraction: float,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample the anchors that enter the loss: at most ``positive_fraction`` of them positive.

    Per image, ``min(#positives, batch_size_per_image * positive_fraction)`` positives are drawn at
    random, and negatives fill the rest of ``batch_size_per_image`` (as many as exist). Random
    permutations are drawn as torchvision's ``BalancedPositiveNegativeSampler`` draws them (positives,
    then negatives, image by image), so the same seed picks the same anchors.

    Args:
        labels: per image ``(N_i,)`` anchor labels: 1 positive, 0 negative, -1 ignored.
        batch_size_per_image: anchors sampled per image.
        positive_fraction: the largest share of positives.
        generator: random source (default: PyTorch's global generator, as torchvision).

    Returns:
        Sorted indices into the concatenation of all images' anchors: positives ``(P,)``, negatives ``(Q,)``.
    """
    positives, negatives, offset = [], [], 0
    for label in labels:
        positive = torch.where(label >= 1)[0]  # (n_pos,)
        negative = torch.where(label == 0)[0]  # (n_neg,)
        num_positive = min(positive.numel(), int(batch_size_per_image * positive_fraction))
        num_negative = min(negative.numel(), batch_size_per_image - num_positive)
        chosen_positive = positive[torch.randperm(positive.numel(), generator=generator,
                                                  device=positive.device)[:num_positive]]
        chosen_negative = negative[torch.randperm(negative.numel(), generator=generator,
                                                  device=negative.device)[:num_negative]]
        positives.append(chosen_positive.sort().values + offset)
        negatives.append(chosen_negative.sort().values + offset)
        offset += label.shape[0]
    return torch.cat(positives), torch.cat(negatives)


def rpn_loss(objectness: torch.Tensor, box_deltas: torch.Tensor, labels: torch.Tensor,
             regression_targets: torch.Tensor, positive_indices: torch.Tensor,
             negative_indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The RPN's two losses on the sampled anchors.

    ``loss_objectness`` is the mean binary cross-entropy over the sampled anchors;
    ``loss_rpn_box_reg`` sums the smooth L1 loss (``beta = 1/9``) of the positives' four offsets and
    divides by the number of *sampled* anchors, as torchvision does.

    Args:
        objectness: ``(A_total,)`` logits of all anchors of all images.
        box_deltas: ``(A_total, 4)`` predicted offsets.
        labels: ``(A_total,)`` 1, 0 or -1.
        regression_targets: ``(A_total, 4)`` encoded offsets to the matched ground truth.
        positive_indices: ``(P,)`` sampled positives.
        negative_indices: ``(Q,)`` sampled negatives.

    Returns:
        ``(loss_objectness, loss_rpn_box_reg)``, scalars.
    """
    sampled = torch.cat([positive_indices, negative_indices])  # (P + Q,)
    box_loss = F.smooth_l1_loss(box_deltas[positive_indices], regression_targets[positive_indices],
                                beta=1 / 9, reduction="sum") / sampled.numel()
    objectness_loss = F.binary_cross_entropy_with_logits(objectness[sampled], labels[sampled])
    return objectness_loss, box_loss


def _image_sizes(images) -> list[tuple[int, int]]:
    """Each image's ``(height, width)`` before padding, from an ImageList or a ``(B, 3, H, W)`` tensor."""
    if hasattr(images, "tensors") and hasattr(images, "image_sizes"):  # torchvision's ImageList
        return [tuple(int(s) for s in size) for size in images.image_sizes]
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return [tuple(images.shape[-2:])] * images.shape[0]
    shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
    raise ValueError(f"images must be a (B, 3, H, W) tensor or a torchvision ImageList, got {shape}.")


class RegionProposalNetwork(nn.Module):
    """Faster R-CNN's region proposal network; a drop-in for torchvision's ``RegionProposalNetwork``.

    Args:
        anchor_generator: the anchors of every feature map (``AnchorGenerator``).
        head: predicts objectness and offsets (``RPNHead``); its ``A`` must match the generator's.
        fg_iou_thresh: IoU at or above which an anchor is positive (paper: 0.7).
        bg_iou_thresh: IoU below which an anchor is negative (paper: 0.3).
        batch_size_per_image: anchors sampled per image for the loss (paper: 256).
        positive_fraction: the largest share of positives among them (paper: 0.5).
        pre_nms_top_n: ``{"training": ..., "testing": ...}`` boxes per feature map before NMS
            (default torchvision's Faster R-CNN: 2000 and 1000).
        post_nms_top_n: ``{"training": ..., "testing": ...}`` proposals per image (default 2000 and 1000).
        nms_thresh: NMS IoU threshold (0.7).
        score_thresh: proposals with a lower objectness probability are dropped.
    """

    def __init__(self, anchor_generator: AnchorGenerator, head: nn.Module, fg_iou_thresh: float = 0.7,
                 bg_iou_thresh: float = 0.3, batch_size_per_image: int = 256, positive_fraction: float = 0.5,
                 pre_nms_top_n: dict[str, int] | None = None, post_nms_top_n: dict[str, int] | None = None,
                 nms_thresh: float = 0.7, score_thresh: float = 0.0) -> None:
        super().__init__()
        pre_nms_top_n = {"training": 2000, "testing": 1000} if pre_nms_top_n is None else dict(pre_nms_top_n)
        post_nms_top_n = {"training": 2000, "testing": 1000} if post_nms_top_n is None else dict(post_nms_top_n)
        for name, value in (("pre_nms_top_n", pre_nms_top_n), ("post_nms_top_n", post_nms_top_n)):
            if set(value) != {"training", "testing"} or any(int(n) < 1 for n in value.values()):
                raise ValueError(f"{name} must be a dict with positive 'training' and 'testing' counts, "
                                 f"e.g. dict(training=2000, testing=1000); got {value!r}.")
        if batch_size_per_image < 1 or not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(f"need batch_size_per_image >= 1 and positive_fraction in [0, 1], got "
                             f"{batch_size_per_image} and {positive_fraction}.")
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self._pre_nms_top_n = pre_nms_top_n
        self._post_nms_top_n = post_nms_top_n
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh
        self.min_size = 1e-3  # proposals narrower or shorter than this many pixels are dropped

    def pre_nms_top_n(self) -> int:
        return self._pre_nms_top_n["training" if self.training else "testing"]

    def post_nms_top_n(self) -> int:
        return self._post_nms_top_n["training" if self.training else "testing"]

    def forward(self, images, features, targets: list[dict[str, torch.Tensor]] | None = None
                ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Proposals for every image, and the RPN losses in training mode.

        Args:
            images: a torchvision ``ImageList`` (padded ``tensors`` and the true ``image_sizes``) or a
                ``(B, 3, H, W)`` tensor.
            features: the backbone's feature maps ``(B, C, H_k, W_k)``, a dict (as torchvision passes
                them) or a list.
            targets: in training mode, one dict per image with ``"boxes"`` ``(M, 4)`` xyxy.

        Returns:
            ``boxes``: per image ``(P, 4)`` proposals, best first; ``losses``: ``{"loss_objectness",
            "loss_rpn_box_reg"}`` in training mode, else empty.
        """
        image_sizes = _image_sizes(images)
        features = list(features.values()) if isinstance(features, dict) else list(features)
        if not features or any(not isinstance(f, torch.Tensor) or f.dim() != 4 or f.shape[0] != len(image_sizes)
                               for f in features):
            raise ValueError(f"features must be a non-empty list (or dict) of (B, C, H, W) tensors with "
                             f"B = {len(image_sizes)} images.")
        objectness, box_deltas = self.head(features)
        anchors = self.anchor_generator(images, features)  # per image (N, 4)
        # (B, N) logits and (B, N, 4) offsets, in the anchors' order
        objectness, box_deltas, num_anchors_per_level = flatten_head_outputs(objectness, box_deltas)
        if objectness.shape[1] != anchors[0].shape[0]:
            raise ValueError(f"the head predicts {objectness.shape[1]} anchors but the generator made "
                             f"{anchors[0].shape[0]}; give RPNHead num_anchors = "
                             f"anchor_generator.num_anchors_per_location()[0].")
        batch = objectness.shape[0]
        proposals = self.box_coder.decode(box_deltas.detach(), anchors).reshape(batch, -1, 4)  # (B, N, 4)
        boxes, _ = select_proposals(proposals, objectness, image_sizes, num_anchors_per_level,
                                    self.pre_nms_top_n(), self.post_nms_top_n(), self.nms_thresh,
                                    self.score_thresh, self.min_size)
        losses: dict[str, torch.Tensor] = {}
        if self.training:
            if targets is None or len(targets) != batch:
                raise ValueError(f"in training mode the RPN needs one target dict with 'boxes' per image "
                                 f"({batch}); got {None if targets is None else len(targets)}. "
                                 f"Call model.eval() for inference.")
            gt_boxes = [target["boxes"] for target in targets]
            for index, boxes_per_image in enumerate(gt_boxes):
                check_boxes(boxes_per_image, f"targets[{index}]['boxes']")
            labels, matched_boxes = assign_targets_to_anchors(anchors, gt_boxes, self.proposal_matcher)
            regression_targets = self.box_coder.encode(matched_boxes, anchors)  # per image (N, 4)
            positive, negative = sample_anchors(labels, self.batch_size_per_image, self.positive_fraction)
            loss_objectness, loss_box = rpn_loss(objectness.reshape(-1), box_deltas.reshape(-1, 4),
                                                 torch.cat(labels), torch.cat(regression_targets),
                                                 positive, negative)
            losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_box}
        return boxes, losses
