"""Mean average precision: the COCO detection metric, written out and equal to pycocotools' COCOeval.

A detector returns scored boxes. For one class and one IoU threshold, rank all its detections over
the whole dataset by score; walking down the ranking, a detection is a true positive when it covers
a not-yet-matched ground-truth box of its class with IoU at least the threshold, otherwise a false
positive. Precision ``TP / (TP + FP)`` and recall ``TP / #ground truth`` after each rank trace the
precision-recall curve, and average precision (AP) summarises it in one number. COCO (Lin et al.
2014) averages AP over ten IoU thresholds ``0.50, 0.55, ..., 0.95`` and over classes: "mAP@[.5:.95]".

Everything follows COCOeval's rules exactly, so the numbers agree with pycocotools:

- per image and class, detections are sorted by decreasing score (a stable sort: ties keep their
  input order) and only the first ``max_detections`` are kept (per image *and class*, as COCOeval);
- greedy matching, highest score first: each detection takes the unmatched ground truth with the
  highest IoU ``>= min(threshold, 1 - 1e-10)``; among equal IoUs the later ground truth wins;
- area ranges (small ``< 32²``, medium ``32²-96²``, large ``> 96²`` pixels, both ends inclusive) use the
  box area; ground truth outside the range is *ignored*: a detection matched to it counts as neither
  a TP nor an FP, and so does an unmatched detection whose own area is outside the range;
- the precision envelope (precision made non-increasing), read at the 101 recall values
  ``0, 0.01, ..., 1`` (the first rank whose recall reaches each value; 0 beyond the largest recall);
- a class with no ground truth gets ``-1`` and is left out of every mean; an image with no ground
  truth contributes only false positives; a class with ground truth but no detections gets AP 0.

Evaluation runs on the CPU in float64 (as COCOeval does); inputs may live on any device.

The same rules score instance masks (COCOeval's ``iouType="segm"``) once the box IoU and box area are
replaced by the mask IoU and the mask's pixel count: ``coco_evaluate`` takes both as arguments, and
``companion/segmentation/mask_ap.py`` passes the mask versions.

Taught in: book/03_detection/04_evaluation.ipynb (mask AP: book/04_segmentation/08_instance_segmentation.ipynb).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from companion.detection.boxes import check_boxes


def numpy_linspace(start: float, stop: float, num: int) -> list[float]:
    """``num`` evenly spaced values computed bit-for-bit as ``numpy.linspace`` does.

    COCOeval's thresholds come from ``np.linspace``; a recall of exactly ``7 / 100`` is on one side or the
    other of the threshold ``0.07`` depending on the last bit, so we reproduce numpy's arithmetic.
    """
    step = (stop - start) / (num - 1)
    values = [index * step + start for index in range(num)]
    values[-1] = stop
    return values


COCO_IOU_THRESHOLDS = numpy_linspace(0.5, 0.95, 10)  # 0.50, 0.55, ..., 0.95
COCO_RECALL_THRESHOLDS = numpy_linspace(0.0, 1.0, 101)  # 0.00, 0.01, ..., 1.00
COCO_AREA_RANGES = {"all": (0.0, 1e5 ** 2), "small": (0.0, 32.0 ** 2),
                    "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e5 ** 2)}
AP_METHODS = ("coco101", "voc11", "all_points")
_EPS = 2.220446049250313e-16  # np.spacing(1): COCOeval adds it to TP + FP before dividing


# ----------------------------------------------------------------------------------------------------
# Precision, recall and average precision of one ranked list


def precision_recall(true_positive: torch.Tensor, ignored: torch.Tensor,
                     num_ground_truth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision and recall after each rank of a list of detections sorted by decreasing score.

    Args:
        true_positive: ``(D,)`` bool, whether each ranked detection matched a ground truth.
        ignored: ``(D,)`` bool, detections that count as neither a TP nor an FP.
        num_ground_truth: the number of (not ignored) ground-truth boxes, ``> 0``.

    Returns:
        ``(precision, recall)``, each ``(D,)`` float64; precision uses COCOeval's ``TP / (TP + FP + eps)``.
    """
    tp = torch.cumsum(true_positive & ~ignored, dim=0).double()  # (D,)
    fp = torch.cumsum(~true_positive & ~ignored, dim=0).double()  # (D,)
    return tp / (fp + tp + _EPS), tp / num_ground_truth


def precision_envelope(precision: torch.Tensor) -> torch.Tensor:
    """The smallest non-increasing curve above ``precision``: at each rank, the best precision later on.

    Args:
        precision: ``(D,)`` precision after each rank.

    Returns:
        ``(D,)`` ``envelope[i] = max(precision[i:])``.
    """
    return torch.flip(torch.cummax(torch.flip(precision, dims=[0]), dim=0).values, dims=[0])  # (D,)


def _check_curve(recall: torch.Tensor, precision: torch.Tensor) -> None:
    for name, curve in (("recall", recall), ("precision", precision)):
        if not isinstance(curve, torch.Tensor) or curve.dim() != 1:
            raise ValueError(f"{name} must be a 1-D tensor (D,), one value per ranked detection.")
        if torch.isnan(curve).any():
            raise ValueError(f"{name} contains NaN; compute it with precision_recall_curve().")
    if recall.shape != precision.shape:
        raise ValueError(f"recall {tuple(recall.shape)} and precision {tuple(precision.shape)} must have "
                         f"the same shape: one pair per ranked detection.")
    if recall.numel() > 1 and (recall[1:] < recall[:-1]).any():
        raise ValueError("recall must be non-decreasing (detections ranked by decreasing score).")


def average_precision(recall: torch.Tensor, precision: torch.Tensor, method: str = "coco101") -> float:
    """Area under a precision-recall curve, in one of three historical flavours.

    - ``"coco101"`` (COCO): mean of the envelope at recall ``0, 0.01, ..., 1``, each read at the first
      rank whose recall reaches the value, 0 where the recall is never reached.
    - ``"voc11"`` (PASCAL VOC 2007): mean over ``t = 0, 0.1, ..., 1`` of the best precision at recall ``>= t``.
    - ``"all_points"`` (PASCAL VOC 2010 and later): the exact area under the envelope, a sum of rectangles
      at every rank where the recall changes.

    Args:
        recall: ``(D,)`` non-decreasing recall after each rank.
        precision: ``(D,)`` precision after each rank.
        method: ``"coco101"``, ``"voc11"`` or ``"all_points"``.

    Returns:
        AP in ``[0, 1]``; 0 for an empty curve.
    """
    if method not in AP_METHODS:
        raise ValueError(f"method must be one of {AP_METHODS}, got {method!r}.")
    _check_curve(recall, precision)
    recall, precision = recall.detach().cpu().double(), precision.detach().cpu().double()
    if recall.numel() == 0:
        return 0.0
    if method == "coco101":
        envelope = precision_envelope(precision)  # (D,)
        thresholds = torch.tensor(COCO_RECALL_THRESHOLDS, dtype=torch.float64)  # (101,)
        ranks = torch.searchsorted(recall, thresholds, side="left")  # (101,) first rank with recall >= r
        reached = ranks < recall.numel()  # (101,)
        sampled = torch.zeros_like(thresholds)
        sampled[reached] = envelope[ranks[reached]]
        return float(sampled.mean())
    if method == "voc11":
        total = 0.0
        for step in range(11):
            above = precision[recall >= step / 10]
            total += float(above.max()) if above.numel() > 0 else 0.0
        return total / 11
    # all_points: pad with recall 0 / 1 and precision 0 at both ends, as the VOC devkit does
    padded_recall = torch.cat([recall.new_zeros(1), recall, recall.new_ones(1)])  # (D + 2,)
    envelope = precision_envelope(torch.cat([precision.new_zeros(1), precision, precision.new_zeros(1)]))
    changes = torch.nonzero(padded_recall[1:] != padded_recall[:-1]).flatten() + 1  # ranks where recall moves
    return float(((padded_recall[changes] - padded_recall[changes - 1]) * envelope[changes]).sum())


# ----------------------------------------------------------------------------------------------------
# Input checks and per-image matching


def _check_boxes_count(boxes, name: str) -> int:
    check_boxes(boxes, name)
    return boxes.shape[0]


def check_detection_dicts(predictions: Sequence[dict], targets: Sequence[dict], region_key: str = "boxes",
                          check_region: Callable[[object, str], int] = _check_boxes_count,
                          region_name: str = "box") -> None:
    """Raise a ``ValueError`` naming the argument unless predictions and targets are well formed.

    Each list holds one dict per image: predictions with ``region_key``, ``scores`` and ``labels``,
    targets with ``region_key`` and ``labels``. ``check_region(value, name)`` validates the regions
    (boxes here, masks in ``companion.segmentation.mask_ap``) and returns how many there are.
    """
    if not isinstance(predictions, (list, tuple)) or not isinstance(targets, (list, tuple)):
        raise ValueError("predictions and targets must be lists with one dict per image.")
    if len(predictions) != len(targets):
        raise ValueError(f"predictions has {len(predictions)} images but targets has {len(targets)}; "
                         f"pass one prediction dict and one target dict per image, in the same order.")
    for argument, items, keys in (("predictions", predictions, (region_key, "scores", "labels")),
                                  ("targets", targets, (region_key, "labels"))):
        for index, item in enumerate(items):
            where = f"{argument}[{index}]"
            if not isinstance(item, dict):
                raise ValueError(f"{where} must be a dict with keys {keys}, got {type(item).__name__}.")
            missing = [key for key in keys if key not in item]
            if missing:
                raise ValueError(f"{where} is missing {missing}; each dict needs {keys}.")
            count = check_region(item[region_key], f"{where}['{region_key}']")
            for key in keys[1:]:
                value = item[key]
                if not isinstance(value, torch.Tensor) or value.shape != (count,):
                    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                    raise ValueError(f"{where}['{key}'] must be a tensor of shape ({count},), one per "
                                     f"{region_name}; got {shape}.")
            if item["labels"].is_floating_point() or item["labels"].dtype == torch.bool:
                raise ValueError(f"{where}['labels'] must be an integer tensor, got {item['labels'].dtype}; "
                                 f"use .long().")
            if "scores" in keys:
                if not item["scores"].is_floating_point():
                    raise ValueError(f"{where}['scores'] must be a float tensor; use .float().")
                if torch.isnan(item["scores"]).any():
                    raise ValueError(f"{where}['scores'] contains NaN; drop those detections first.")


def _areas(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (N,) as COCO's w * h


def _pairwise_iou(det_boxes: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """IoU of checked float64 boxes, ``(D, G)``, as pycocotools' C code: 0 where the boxes do not meet."""
    top_left = torch.max(det_boxes[:, None, :2], gt_boxes[None, :, :2])  # (D, G, 2)
    bottom_right = torch.min(det_boxes[:, None, 2:], gt_boxes[None, :, 2:])  # (D, G, 2)
    width_height = (bottom_right - top_left).clamp(min=0)  # (D, G, 2)
    intersection = width_height[..., 0] * width_height[..., 1]  # (D, G)
    union = _areas(det_boxes)[:, None] + _areas(gt_boxes)[None, :] - intersection  # (D, G)
    return torch.where(intersection > 0, intersection / union, 0.0)  # (D, G)


def match_detections(iou: list[list[float]], gt_ignore: list[bool],
                     iou_threshold: float) -> list[int]:
    """COCOeval's greedy matching of one image and class at one IoU threshold.

    Args:
        iou: ``D x G`` IoU of the detections (sorted by decreasing score) with the ground truths.
        gt_ignore: ``G`` flags; ignored ground truths must come last.
        iou_threshold: the IoU a match needs (COCOeval caps it at ``1 - 1e-10``).

    Returns:
        for each detection, the index of its ground truth, or -1 when it matched none.
    """
    gt_taken = [False] * len(gt_ignore)
    matches = []
    for det_iou in iou:  # highest score first
        best_iou, best = min(iou_threshold, 1 - 1e-10), -1
        for gt, overlap in enumerate(det_iou):
            if gt_taken[gt]:
                continue
            if best > -1 and not gt_ignore[best] and gt_ignore[gt]:
                break  # a real match beats any ignored ground truth, which all come last
            if overlap < best_iou:
                continue
            best_iou, best = overlap, gt  # ">=" so the later of two equal IoUs wins, as in COCOeval
        if best > -1:
            gt_taken[best] = True
        matches.append(best)
    return matches


def _rank(scores: torch.Tensor) -> torch.Tensor:
    """Indices that sort ``scores`` by decreasing value, ties in input order (numpy's mergesort of -s)."""
    return torch.argsort(-scores, stable=True)  # (D,)


def _evaluate_image(det_regions, det_scores, gt_regions, iou_thresholds, area_ranges, max_detections,
                    pairwise_iou=_pairwise_iou, region_area=_areas):
    """Match one image's detections of one class for every area range and IoU threshold.

    The regions are boxes ``(D, 4)`` by default; ``pairwise_iou`` and ``region_area`` say how to compare
    and measure other regions (masks ``(D, H, W)`` for COCO's segmentation AP).

    Returns one record per area range: ``(scores (D,), true_positive (T, D), ignored (T, D), num_gt)``.
    """
    order = _rank(det_scores)[:max_detections]
    det_regions, det_scores = det_regions[order], det_scores[order]  # (D, ...), (D,)
    iou = pairwise_iou(det_regions, gt_regions)  # (D, G)
    gt_areas, det_areas = region_area(gt_regions).tolist(), region_area(det_regions).tolist()
    records = []
    for low, high in area_ranges:
        gt_ignore = [area < low or area > high for area in gt_areas]
        gt_order = sorted(range(len(gt_ignore)), key=lambda g: gt_ignore[g])  # ignored last, stable
        sorted_ignore = [gt_ignore[g] for g in gt_order]
        sorted_iou = iou[:, gt_order].tolist() if gt_order else [[] for _ in det_areas]  # D x G
        det_outside = [area < low or area > high for area in det_areas]
        true_positive, ignored = [], []
        for threshold in iou_thresholds:
            matches = match_detections(sorted_iou, sorted_ignore, threshold)
            true_positive.append([m > -1 for m in matches])
            # matched to an ignored ground truth, or unmatched and itself outside the area range
            ignored.append([sorted_ignore[m] if m > -1 else outside for m, outside in zip(matches, det_outside)])
        shape = (len(iou_thresholds), len(det_areas))  # (T, D)
        records.append((det_scores, torch.tensor(true_positive, dtype=torch.bool).reshape(shape),
                        torch.tensor(ignored, dtype=torch.bool).reshape(shape), sorted_ignore.count(False)))
    return records


def _accumulate(records, limit):
    """Concatenate one class's per-image records (first ``limit`` detections each) and rank them."""
    scores = torch.cat([r[0][:limit] for r in records])  # (D,)
    order = _rank(scores)
    true_positive = torch.cat([r[1][:, :limit] for r in records], dim=1)[:, order]  # (T, D)
    ignored = torch.cat([r[2][:, :limit] for r in records], dim=1)[:, order]  # (T, D)
    return scores[order], true_positive, ignored, sum(r[3] for r in records)


def _to_cpu(predictions, targets):
    """Every tensor on the CPU in float64 (labels int64), once: evaluation is bookkeeping on the host."""
    return ([{key: item[key].detach().cpu().double() if key != "labels" else item[key].detach().cpu().long()
              for key in ("boxes", "scores", "labels")} for item in predictions],
            [{key: item[key].detach().cpu().double() if key != "labels" else item[key].detach().cpu().long()
              for key in ("boxes", "labels")} for item in targets])


def _per_image_class(predictions, targets, label, region_key="boxes"):
    """For each image: the detected regions and scores, and the ground-truth regions, of class ``label``."""
    for prediction, target in zip(predictions, targets):
        det = prediction["labels"] == label  # (D,)
        gt = target["labels"] == label  # (K,)
        yield prediction[region_key][det], prediction["scores"][det], target[region_key][gt]


# ----------------------------------------------------------------------------------------------------
# Public entry points


def precision_recall_curve(predictions: Sequence[dict], targets: Sequence[dict], label: int,
                           iou_threshold: float = 0.5, max_detections: int = 100
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The precision-recall curve of one class at one IoU threshold, over a whole dataset.

    Args:
        predictions: one dict per image with ``"boxes"`` ``(D, 4)``, ``"scores"`` ``(D,)``, ``"labels"`` ``(D,)``.
        targets: one dict per image with ``"boxes"`` ``(K, 4)`` and ``"labels"`` ``(K,)``.
        label: the class to evaluate.
        iou_threshold: the IoU a detection needs to match a ground truth.
        max_detections: detections kept per image (and class), best first.

    Returns:
        ``(precision, recall, scores)``, each ``(D,)`` float64, one entry per detection of the class
        ranked by decreasing score. Empty tensors when the class has no detections.
    """
    check_detection_dicts(predictions, targets)
    predictions, targets = _to_cpu(predictions, targets)
    records = [_evaluate_image(boxes, scores, gt, [iou_threshold], [COCO_AREA_RANGES["all"]], max_detections)[0]
               for boxes, scores, gt in _per_image_class(predictions, targets, label)]
    if sum(record[3] for record in records) == 0:
        raise ValueError(f"class {label} has no ground-truth box in targets: recall is undefined.")
    scores, true_positive, ignored, num_gt = _accumulate(records, max_detections)
    precision, recall = precision_recall(true_positive[0], ignored[0], num_gt)
    return precision, recall, scores


def mean_average_precision(predictions: Sequence[dict], targets: Sequence[dict],
                           iou_thresholds: Sequence[float] | None = None,
                           max_detections: int = 100) -> dict:
    """COCO's box mAP and mAR, from scratch, equal to pycocotools' ``COCOeval`` (``iouType="bbox"``).

    Args:
        predictions: one dict per image: ``"boxes"`` ``(D, 4)`` xyxy, ``"scores"`` ``(D,)``, ``"labels"`` ``(D,)``.
        targets: one dict per image, same order: ``"boxes"`` ``(K, 4)`` xyxy and ``"labels"`` ``(K,)``
            (extra keys such as ``"masks"`` are ignored). Every ground truth counts (none is a crowd).
        iou_thresholds: the IoU thresholds to average over; default COCO's ``0.50:0.05:0.95``.
        max_detections: detections kept per image and class, best first (COCO: 100). Recall is also
            reported with 1 and 10 detections, when they are at most ``max_detections``.

    Returns:
        dict of floats: ``"map"`` (AP averaged over thresholds and classes), ``"map_50"``, ``"map_75"``,
        ``"map_small"``, ``"map_medium"``, ``"map_large"``, ``"mar_1"``, ``"mar_10"``,
        ``"mar_{max_detections}"`` (``"mar_100"`` by default), ``"mar_small"``, ``"mar_medium"``,
        ``"mar_large"``; ``"map_per_iou_threshold"``, a dict threshold -> AP averaged over the classes; and
        ``"map_per_class"``, a dict label -> AP averaged over the thresholds. ``-1`` where
        no ground truth exists (e.g. ``map_small`` without small objects; a class only predicted).
    """
    check_detection_dicts(predictions, targets)
    predictions, targets = _to_cpu(predictions, targets)
    return coco_evaluate(predictions, targets, iou_thresholds, max_detections)


def coco_evaluate(predictions: Sequence[dict], targets: Sequence[dict],
                  iou_thresholds: Sequence[float] | None = None, max_detections: int = 100,
                  region_key: str = "boxes",
                  pairwise_iou: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = _pairwise_iou,
                  region_area: Callable[[torch.Tensor], torch.Tensor] = _areas) -> dict:
    """COCOeval's evaluate, accumulate and summarize for any kind of region, on checked CPU inputs.

    ``mean_average_precision`` calls it with boxes; ``companion.segmentation.mask_ap`` with masks. The
    rules (matching, area ranges, envelope, 101 recall points) do not depend on what a region is: only
    how two regions overlap (``pairwise_iou``) and how large one is (``region_area``).

    Args:
        predictions: one dict per image with ``region_key`` ``(D, ...)``, ``"scores"`` ``(D,)`` float64
            and ``"labels"`` ``(D,)`` int64, on the CPU.
        targets: one dict per image with ``region_key`` ``(K, ...)`` and ``"labels"`` ``(K,)``.
        iou_thresholds: as in ``mean_average_precision``.
        max_detections: as in ``mean_average_precision``.
        region_key: the dict key holding the regions.
        pairwise_iou: ``(regions (D, ...), regions (G, ...)) -> (D, G)`` float64 IoU.
        region_area: ``regions (N, ...) -> (N,)`` areas in pixels, for COCO's area ranges.

    Returns:
        the dict described in ``mean_average_precision``.
    """
    thresholds = list(COCO_IOU_THRESHOLDS if iou_thresholds is None else iou_thresholds)
    if not thresholds or any(not 0.0 <= float(t) <= 1.0 for t in thresholds):
        raise ValueError(f"iou_thresholds must be a non-empty list of values in [0, 1], got {iou_thresholds!r}.")
    if not isinstance(max_detections, int) or max_detections < 1:
        raise ValueError(f"max_detections must be a positive int, got {max_detections!r}.")
    limits = sorted({limit for limit in (1, 10, max_detections) if limit <= max_detections})
    area_names = list(COCO_AREA_RANGES)
    labels = sorted({int(label) for item in (*predictions, *targets) for label in item["labels"].tolist()})
    recall_thresholds = torch.tensor(COCO_RECALL_THRESHOLDS, dtype=torch.float64)  # (R,)

    T, R, K, A, M = len(thresholds), len(recall_thresholds), len(labels), len(area_names), len(limits)
    precision = -torch.ones(T, R, K, A, M, dtype=torch.float64)  # -1: no ground truth
    recall = -torch.ones(T, K, A, M, dtype=torch.float64)
    for k, label in enumerate(labels):
        per_image = [_evaluate_image(regions, scores, gt, thresholds, COCO_AREA_RANGES.values(), max_detections,
                                     pairwise_iou, region_area)
                     for regions, scores, gt in _per_image_class(predictions, targets, label, region_key)
                     if regions.shape[0] > 0 or gt.shape[0] > 0]  # COCOeval skips empty (image, class) pairs
        for a in range(A):
            records = [image_records[a] for image_records in per_image]
            for m, limit in enumerate(limits):
                if not records:
                    continue
                _, true_positive, ignored, num_gt = _accumulate(records, limit)
                if num_gt == 0:
                    continue
                for t in range(T):
                    prec, rec = precision_recall(true_positive[t], ignored[t], num_gt)  # (D,), (D,)
                    recall[t, k, a, m] = rec[-1] if rec.numel() else 0.0
                    if rec.numel() == 0:
                        precision[t, :, k, a, m] = 0.0
                        continue
                    envelope = precision_envelope(prec)
                    ranks = torch.searchsorted(rec, recall_thresholds, side="left")  # (R,)
                    reached = ranks < rec.numel()
                    precision[t, :, k, a, m] = 0.0
                    precision[t, reached, k, a, m] = envelope[ranks[reached]]

    def summary(values: torch.Tensor) -> float:  # mean over the entries that exist, else -1
        valid = values[values > -1]
        return float(valid.mean()) if valid.numel() else -1.0

    def threshold_index(value: float) -> list[int]:
        return [t for t, threshold in enumerate(thresholds) if threshold == value]

    last, all_areas = M - 1, area_names.index("all")
    result = {
        "map": summary(precision[:, :, :, all_areas, last]),
        "map_50": summary(precision[threshold_index(0.5), :, :, all_areas, last]),
        "map_75": summary(precision[threshold_index(0.75), :, :, all_areas, last]),
    }
    for name in ("small", "medium", "large"):
        result[f"map_{name}"] = summary(precision[:, :, :, area_names.index(name), last])
    for m, limit in enumerate(limits):
        result[f"mar_{limit}"] = summary(recall[:, :, all_areas, m])
    for name in ("small", "medium", "large"):
        result[f"mar_{name}"] = summary(recall[:, :, area_names.index(name), last])
    result["map_per_iou_threshold"] = {float(threshold): summary(precision[t, :, :, all_areas, last])
                                       for t, threshold in enumerate(thresholds)}
    result["map_per_class"] = {label: summary(precision[:, :, k, all_areas, last]) for k, label in enumerate(labels)}
    return result
