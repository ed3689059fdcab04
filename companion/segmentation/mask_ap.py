"""Mask average precision: COCO's instance-segmentation metric, equal to pycocotools' ``iouType="segm"``.

An instance segmenter returns, per image, scored and labelled *masks* instead of boxes. COCO scores
them exactly as it scores boxes (rank detections by score per class, match greedily at ten IoU
thresholds ``0.50, ..., 0.95``, average the 101-point precision over thresholds and classes) with two
substitutions:

- the overlap of two instances is the **mask IoU**, ``|A ∩ B| / |A ∪ B|`` counted in pixels;
- an instance's size, for the small / medium / large ranges, is its mask's pixel count, not its box
  area as in our box evaluator (pycocotools reads a ground truth's size from its annotation ``area``
  in both modes, which for COCO is the mask's pixel count; a detection's size is its mask's area).

So this module only adds those two functions and hands them to the box evaluator's machinery
(``companion.detection.evaluate.coco_evaluate``). Soft masks (probabilities, as Mask R-CNN outputs)
are binarised at ``mask_threshold`` (0.5, the usual choice) first.

Taught in: book/04_segmentation/08_instance_segmentation.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from companion.detection.evaluate import check_detection_dicts, coco_evaluate


def _check_mask_stack(masks: torch.Tensor, name: str) -> None:
    if not isinstance(masks, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, H, W), got {type(masks).__name__}; "
                         f"convert it with torch.as_tensor().")
    if masks.dim() != 3:
        raise ValueError(f"{name} must have shape (N, H, W), got {tuple(masks.shape)}; "
                         f"use masks[:, 0] for torchvision's (N, 1, H, W) or masks.unsqueeze(0) for one mask.")


def mask_area(masks: torch.Tensor) -> torch.Tensor:
    """The pixel count of each mask (COCO's segmentation ``area``).

    Args:
        masks: ``(N, H, W)`` bool (or numeric: non-zero is inside).

    Returns:
        ``(N,)`` float64 areas in pixels.
    """
    _check_mask_stack(masks, "masks")
    return torch.count_nonzero(masks.flatten(1), dim=1).double()  # (N,)


def mask_iou(masks1: torch.Tensor, masks2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of two sets of binary masks, in pixels; equal to ``pycocotools.mask.iou``.

    The intersection of every pair is one matrix product of the flattened masks; the union follows
    from the areas: ``|A ∪ B| = |A| + |B| - |A ∩ B|``. Pairs whose union is empty (two empty masks)
    get IoU 0, as in pycocotools.

    Args:
        masks1: ``(N, H, W)`` bool (or numeric: non-zero is inside).
        masks2: ``(M, H, W)`` on the same grid.

    Returns:
        ``(N, M)`` float64 IoU in ``[0, 1]``, on ``masks1``'s device; pixel counts are exact integers.
        ``N = 0`` or ``M = 0`` gives an empty matrix whatever the mask sizes.
    """
    _check_mask_stack(masks1, "masks1")
    _check_mask_stack(masks2, "masks2")
    if masks1.shape[0] == 0 or masks2.shape[0] == 0:  # nothing to compare: any (0, h, w) stack will do
        return torch.zeros(masks1.shape[0], masks2.shape[0], dtype=torch.float64, device=masks1.device)
    if masks1.shape[1:] != masks2.shape[1:]:
        raise ValueError(f"masks1 {tuple(masks1.shape)} and masks2 {tuple(masks2.shape)} must share (H, W); "
                         f"resize the predicted masks to the image size first.")
    flat1 = masks1.bool().flatten(1)  # (N, H*W)
    flat2 = masks2.bool().flatten(1).to(flat1.device)  # (M, H*W)
    # A product of 0/1 values summed over at most 2**24 pixels is an exact float32 integer; float64 beyond.
    dtype = torch.float32 if flat1.shape[1] <= 2 ** 24 else torch.float64
    with torch.autocast(device_type=flat1.device.type, enabled=False):  # no half-precision rounding
        intersection = (flat1.to(dtype) @ flat2.to(dtype).T).double()  # (N, M) pixels in both
    area1 = torch.count_nonzero(flat1, dim=1).double()  # (N,)
    area2 = torch.count_nonzero(flat2, dim=1).double()  # (M,)
    union = area1[:, None] + area2[None, :] - intersection  # (N, M)
    return torch.where(union > 0, intersection / union.clamp(min=1), 0.0)  # (N, M)


def _binary_masks(masks: torch.Tensor, name: str, mask_threshold: float) -> torch.Tensor:
    """Bool ``(N, H, W)`` on the CPU: torchvision's ``(N, 1, H, W)`` squeezed, soft masks thresholded."""
    if isinstance(masks, torch.Tensor) and masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]  # (N, H, W) torchvision's Mask R-CNN output
    _check_mask_stack(masks, name)
    masks = masks.detach().cpu()
    if masks.dtype == torch.bool:
        return masks
    if masks.is_floating_point():
        return masks > mask_threshold  # (N, H, W) probabilities -> binary
    return masks != 0


def _check_and_convert(predictions: Sequence[dict], targets: Sequence[dict],
                       mask_threshold: float) -> tuple[list[dict], list[dict]]:
    def mask_count(masks, name: str) -> int:
        return _binary_masks(masks, name, mask_threshold).shape[0]

    check_detection_dicts(predictions, targets, "masks", mask_count, region_name="mask")
    converted: dict[str, list[dict]] = {"predictions": [], "targets": []}
    for argument, items in (("predictions", predictions), ("targets", targets)):
        for index, item in enumerate(items):
            record = {"masks": _binary_masks(item["masks"], f"{argument}[{index}]['masks']", mask_threshold),
                      "labels": item["labels"].detach().cpu().long()}
            if argument == "predictions":  # checked above: predictions carry scores
                record["scores"] = item["scores"].detach().cpu().double()
            converted[argument].append(record)
    for index, (prediction, target) in enumerate(zip(converted["predictions"], converted["targets"])):
        if prediction["masks"].shape[0] and target["masks"].shape[0] and \
                prediction["masks"].shape[1:] != target["masks"].shape[1:]:
            raise ValueError(f"predictions[{index}]['masks'] is {tuple(prediction['masks'].shape[1:])} but "
                             f"targets[{index}]['masks'] is {tuple(target['masks'].shape[1:])}; masks of one "
                             f"image must share the image's (H, W).")
    return converted["predictions"], converted["targets"]


def mask_average_precision(predictions: Sequence[dict], targets: Sequence[dict],
                           iou_thresholds: Sequence[float] | None = None, max_detections: int = 100,
                           mask_threshold: float = 0.5) -> dict:
    """COCO's mask mAP and mAR, equal to pycocotools' ``COCOeval`` with ``iouType="segm"``.

    Args:
        predictions: one dict per image: ``"masks"`` ``(D, H, W)`` bool or float probabilities
            (torchvision's ``(D, 1, H, W)`` is accepted too), ``"scores"`` ``(D,)``, ``"labels"`` ``(D,)``.
            Other keys (``"boxes"``) are ignored.
        targets: one dict per image, same order: ``"masks"`` ``(K, H, W)`` bool and ``"labels"`` ``(K,)``.
            Every instance counts (none is a crowd); its area is its pixel count.
        iou_thresholds: mask-IoU thresholds to average over; default COCO's ``0.50:0.05:0.95``.
        max_detections: detections kept per image and class, best first (COCO: 100).
        mask_threshold: a float mask's pixel is inside when its value is above this.

    Returns:
        the same dict as ``companion.detection.evaluate.mean_average_precision`` (``"map"``,
        ``"map_50"``, ``"map_75"``, ``"map_small"``, ..., ``"mar_100"``, ``"map_per_class"``, ...), with
        mask IoU and mask areas in place of box IoU and box areas.
    """
    if not 0.0 <= float(mask_threshold) < 1.0:
        raise ValueError(f"mask_threshold must be in [0, 1), got {mask_threshold!r}.")
    predictions, targets = _check_and_convert(predictions, targets, mask_threshold)
    return coco_evaluate(predictions, targets, iou_thresholds, max_detections, region_key="masks",
                         pairwise_iou=mask_iou, region_area=mask_area)
