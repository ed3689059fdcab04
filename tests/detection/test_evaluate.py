"""Tests for companion/detection/evaluate.py: every COCO statistic equals pycocotools' COCOeval."""

import contextlib
import io

import numpy as np
import pytest
import torch

from companion.detection.evaluate import (COCO_IOU_THRESHOLDS, COCO_RECALL_THRESHOLDS, average_precision,
                                          mean_average_precision, numpy_linspace, precision_recall_curve)

STAT_KEYS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
             "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]  # COCOeval.stats order


def random_boxes(n, generator, canvas=300.0, min_size=4.0, max_size=160.0):
    """``n`` xyxy boxes of widely varying size, so that all three COCO area ranges occur."""
    top_left = torch.rand(n, 2, generator=generator) * canvas  # (n, 2)
    size = min_size + torch.rand(n, 2, generator=generator) ** 2 * (max_size - min_size)  # (n, 2)
    return torch.cat([top_left, top_left + size], dim=1)  # (n, 4)


def random_dataset(seed, num_images=12, num_classes=4, detections_per_image=12, tied_scores=False):
    """Ground truth and noisy detections with the awkward cases: images without ground truth, a class
    never predicted (``num_classes``), a class only predicted (``num_classes + 1``), duplicates."""
    generator = torch.Generator().manual_seed(seed)
    predictions, targets = [], []
    for image in range(num_images):
        num_gt = 0 if image % 4 == 3 else int(torch.randint(1, 6, (1,), generator=generator))
        gt_boxes = random_boxes(num_gt, generator)
        gt_labels = torch.randint(1, num_classes + 1, (num_gt,), generator=generator)
        # detections: jittered copies of the ground truth (some twice), plus random false positives
        copies = torch.randint(0, max(num_gt, 1), (detections_per_image // 2,), generator=generator)[: 2 * num_gt]
        jitter = torch.randn(copies.numel(), 4, generator=generator) * 3
        near = (gt_boxes[copies] + jitter) if num_gt else torch.zeros(0, 4)
        near = torch.cat([near[:, :2], torch.maximum(near[:, 2:], near[:, :2] + 1)], dim=1)  # keep x2 > x1
        far = random_boxes(detections_per_image - near.shape[0], generator)
        boxes = torch.cat([near, far])  # (D, 4)
        labels = torch.cat([gt_labels[copies] if num_gt else torch.zeros(0, dtype=torch.int64),
                            torch.randint(1, num_classes + 2, (far.shape[0],), generator=generator)])
        labels[labels == num_classes] = num_classes + 1  # class num_classes: ground truth only
        scores = torch.rand(boxes.shape[0], generator=generator)
        if tied_scores:
            scores = (scores * 4).round() / 4  # many exact ties: the stable sort decides
        predictions.append({"boxes": boxes, "scores": scores, "labels": labels})
        targets.append({"boxes": gt_boxes, "labels": gt_labels})
    return predictions, targets


def coco_eval(predictions, targets, max_detections=100, iou_thresholds=None):
    """Run pycocotools' COCOeval on the same dicts (images numbered 1..N), silencing its prints."""
    pytest.importorskip("pycocotools", reason="pycocotools is needed for the reference COCOeval")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    labels = sorted({int(label) for item in (*predictions, *targets) for label in item["labels"].tolist()})
    annotations, results = [], []
    for image, (prediction, target) in enumerate(zip(predictions, targets), start=1):
        for (x1, y1, x2, y2), label in zip(target["boxes"].double().tolist(), target["labels"].tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": image, "category_id": label,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        for (x1, y1, x2, y2), score, label in zip(prediction["boxes"].double().tolist(),
                                                  prediction["scores"].double().tolist(),
                                                  prediction["labels"].tolist()):
            results.append({"image_id": image, "category_id": label, "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": score})
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = {"images": [{"id": i} for i in range(1, len(targets) + 1)],
                                "annotations": annotations, "categories": [{"id": label} for label in labels]}
        ground_truth.createIndex()
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), iouType="bbox")
        evaluator.params.maxDets = [1, 10, max_detections]
        if iou_thresholds is not None:
            evaluator.params.iouThrs = np.array(iou_thresholds)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator, labels


def assert_equal_to_coco(ours, evaluator, labels, max_detections=100):
    keys = [key if key != "mar_100" else f"mar_{max_detections}" for key in STAT_KEYS]
    stats = list(evaluator.stats)
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (T, R, K) area "all", most detections
    if max_detections != 100:  # summarize() hard-codes maxDets=100 for stats[0]: read the array instead
        stats[0] = precision[precision > -1].mean()
    for key, reference in zip(keys, stats):
        assert ours[key] == pytest.approx(reference, abs=1e-4), key
    for t, threshold in enumerate(evaluator.params.iouThrs):
        per_threshold = precision[t]
        reference = per_threshold[per_threshold > -1].mean() if (per_threshold > -1).any() else -1.0
        assert ours["map_per_iou_threshold"][float(threshold)] == pytest.approx(reference, abs=1e-4), threshold
    for k, label in enumerate(labels):
        per_class = precision[:, :, k]
        reference = per_class[per_class > -1].mean() if (per_class > -1).any() else -1.0
        assert ours["map_per_class"][label] == pytest.approx(reference, abs=1e-4), label


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_equals_cocoeval_on_random_detections(seed):
    predictions, targets = random_dataset(seed, tied_scores=seed == 3)
    evaluator, labels = coco_eval(predictions, targets)
    ours = mean_average_precision(predictions, targets)
    assert_equal_to_coco(ours, evaluator, labels)
    assert ours["map_per_class"][4] == 0.0 and ours["map_per_class"][5] == -1.0  # never predicted / no gt
    assert 0.0 < ours["map"] < 1.0


@pytest.mark.parametrize("max_detections", [12, 20])
def test_equals_cocoeval_when_max_detections_truncates(max_detections):
    predictions, targets = random_dataset(7, num_images=6, num_classes=2, detections_per_image=60)
    evaluator, labels = coco_eval(predictions, targets, max_detections=max_detections)
    ours = mean_average_precision(predictions, targets, max_detections=max_detections)
    assert_equal_to_coco(ours, evaluator, labels, max_detections)
    assert ours != mean_average_precision(predictions, targets)  # the cap changed something
    assert ours["mar_1"] <= ours["mar_10"] <= ours[f"mar_{max_detections}"]


def test_equals_cocoeval_with_custom_iou_thresholds():
    predictions, targets = random_dataset(5)
    evaluator, labels = coco_eval(predictions, targets, iou_thresholds=[0.3, 0.5, 0.75])
    ours = mean_average_precision(predictions, targets, iou_thresholds=[0.3, 0.5, 0.75])
    assert_equal_to_coco(ours, evaluator, labels)


def test_perfect_predictions_score_one():
    _, targets = random_dataset(0)
    predictions = [{"boxes": t["boxes"].clone(), "scores": torch.ones(len(t["labels"])), "labels": t["labels"]}
                   for t in targets]
    ours = mean_average_precision(predictions, targets)
    for key in ("map", "map_50", "map_75", "mar_100"):
        assert ours[key] == pytest.approx(1.0)
    assert_equal_to_coco(ours, *coco_eval(predictions, targets))


def test_no_predictions_score_zero():
    _, targets = random_dataset(0)
    empty = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
             for _ in targets]
    ours = mean_average_precision(empty, targets)
    for key in STAT_KEYS:
        assert ours[key] in (0.0, -1.0), key  # -1 only where an area range has no ground truth
    assert ours["map"] == 0.0 and ours["mar_100"] == 0.0


def test_no_ground_truth_anywhere_gives_minus_one():
    predictions, _ = random_dataset(0, num_images=2)
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)} for _ in predictions]
    assert mean_average_precision(predictions, targets)["map"] == -1.0


def test_thresholds_are_numpy_linspace_bit_for_bit():
    assert COCO_IOU_THRESHOLDS == np.linspace(0.5, 0.95, 10).tolist()
    assert COCO_RECALL_THRESHOLDS == np.linspace(0.0, 1.0, 101).tolist()
    assert numpy_linspace(0.0, 1.0, 11) == np.linspace(0.0, 1.0, 11).tolist()


def test_average_precision_by_hand():
    # two ground truths; ranked: TP, FP, TP -> precision 1, 1/2, 2/3; recall 1/2, 1/2, 1
    precision = torch.tensor([1.0, 0.5, 2 / 3])
    recall = torch.tensor([0.5, 0.5, 1.0])
    assert average_precision(recall, precision, "all_points") == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert average_precision(recall, precision, "voc11") == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    assert average_precision(recall, precision, "coco101") == pytest.approx((51 * 1 + 50 * 2 / 3) / 101)
    assert average_precision(torch.zeros(0), torch.zeros(0)) == 0.0


def test_curve_and_average_precision_match_coco_per_threshold():
    predictions, targets = random_dataset(2)
    evaluator, labels = coco_eval(predictions, targets)
    for k, label in enumerate(labels[:3]):
        precision, recall, scores = precision_recall_curve(predictions, targets, label, iou_threshold=0.5)
        assert torch.all(scores[1:] <= scores[:-1])  # ranked by decreasing score
        reference = evaluator.eval["precision"][0, :, k, 0, -1].mean()  # IoU 0.5, area "all", 100 dets
        assert average_precision(recall, precision, "coco101") == pytest.approx(reference, abs=1e-4)


def test_runs_on_a_device_and_keeps_dtypes_agnostic():
    predictions, targets = random_dataset(1, num_images=3)
    doubled = [{key: value.double() if value.is_floating_point() else value for key, value in p.items()}
               for p in predictions]
    assert mean_average_precision(doubled, targets)["map"] == mean_average_precision(predictions, targets)["map"]


def _one_image():
    prediction = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.9]),
                  "labels": torch.tensor([1])}
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}
    return prediction, target


@pytest.mark.parametrize("change, message", [
    (lambda p, t: ([p, p], [t]), "predictions has 2 images but targets has 1"),
    (lambda p, t: ([{k: v for k, v in p.items() if k != "scores"}], [t]),
     r"predictions\[0\] is missing \['scores'\]"),
    (lambda p, t: ([p], [{**t, "labels": torch.tensor([1, 2])}]),
     r"targets\[0\]\['labels'\] must be a tensor of shape"),
    (lambda p, t: ([{**p, "boxes": torch.zeros(1, 5)}], [t]), r"predictions\[0\]\['boxes'\] must have shape"),
    (lambda p, t: ([{**p, "scores": torch.tensor([float("nan")])}], [t]), r"predictions\[0\]\['scores'\] contains NaN"),
    (lambda p, t: ([p], [{**t, "boxes": torch.tensor([[0.0, float("nan"), 1, 1]])}]),
     r"targets\[0\]\['boxes'\] contains NaN"),
    (lambda p, t: ([{**p, "labels": torch.tensor([1.0])}], [t]), "must be an integer tensor"),
    (lambda p, t: (p, [t]), "must be lists"),
])
def test_bad_input_raises_value_error_naming_the_argument(change, message):
    predictions, targets = change(*_one_image())
    with pytest.raises(ValueError, match=message):
        mean_average_precision(predictions, targets)


def test_bad_parameters_raise():
    prediction, target = _one_image()
    with pytest.raises(ValueError, match="max_detections"):
        mean_average_precision([prediction], [target], max_detections=0)
    with pytest.raises(ValueError, match="iou_thresholds"):
        mean_average_precision([prediction], [target], iou_thresholds=[1.5])
    with pytest.raises(ValueError, match="method"):
        average_precision(torch.ones(1), torch.ones(1), method="voc12")
    with pytest.raises(ValueError, match="recall must be non-decreasing"):
        average_precision(torch.tensor([0.5, 0.2]), torch.ones(2))
    with pytest.raises(ValueError, match="no ground-truth box"):
        precision_recall_curve([prediction], [target], label=7)
