"""Tests for companion/segmentation/mask_ap.py: mask IoU and mask mAP equal pycocotools (iouType="segm")."""

import contextlib
import io

import numpy as np
import pytest
import torch

from companion.detection.evaluate import mean_average_precision
from companion.segmentation.mask_ap import mask_area, mask_average_precision, mask_iou

STAT_KEYS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
             "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]  # COCOeval.stats order
CANVAS = 144  # large enough for COCO's three area ranges (96**2 = 9216 pixels and more is "large")


def random_blobs(n, generator, canvas=CANVAS, large_first=False):
    """``n`` ellipses of widely varying size with ragged edges, as bool masks ``(n, canvas, canvas)``;
    with ``large_first`` the first one is a large centred blob (COCO "large": above 96**2 pixels)."""
    rows = torch.arange(canvas, dtype=torch.float32)[:, None]  # (H, 1)
    cols = torch.arange(canvas, dtype=torch.float32)[None, :]  # (1, W)
    masks = torch.zeros(n, canvas, canvas, dtype=torch.bool)
    for k in range(n):
        centre = torch.rand(2, generator=generator) * canvas  # (2,)
        radii = 2 + torch.rand(2, generator=generator) ** 1.5 * 80  # (2,) from tiny to most of the canvas
        if large_first and k == 0:
            centre, radii = centre / 4 + 3 * canvas / 8, radii / 8 + 60  # (2,), (2,) inside the canvas
        inside = ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1  # (H, W)
        ragged = torch.rand(canvas, canvas, generator=generator) < 0.9
        masks[k] = inside & ragged
    return masks


def perturb(masks, generator, shift_max=4):
    """Noisy copies: shifted by a few pixels, with some pixels flipped inside their bounding region."""
    copies = torch.zeros_like(masks)
    for k, mask in enumerate(masks):
        dy, dx = torch.randint(-shift_max, shift_max + 1, (2,), generator=generator).tolist()
        shifted = torch.roll(mask, shifts=(dy, dx), dims=(0, 1))
        noise = torch.rand(mask.shape, generator=generator) < 0.15
        copies[k] = shifted ^ (noise & shifted)  # drop about 15 % of the pixels
    return copies


def random_dataset(seed, num_images=8, num_classes=3, detections_per_image=10, soft=False):
    """Instances and noisy detections with the awkward cases: an image without instances, a class never
    predicted (``num_classes``), a class only predicted (``num_classes + 1``), duplicates, empty masks."""
    generator = torch.Generator().manual_seed(seed)
    predictions, targets = [], []
    for image in range(num_images):
        num_gt = 0 if image % 4 == 3 else int(torch.randint(1, 5, (1,), generator=generator))
        gt_masks = random_blobs(num_gt, generator, large_first=image % 4 == 0)
        gt_labels = torch.randint(1, num_classes + 1, (num_gt,), generator=generator)
        copies = torch.randint(0, max(num_gt, 1), (detections_per_image // 2,), generator=generator)[: 2 * num_gt]
        near = perturb(gt_masks[copies], generator) if num_gt else torch.zeros(0, CANVAS, CANVAS, dtype=torch.bool)
        far = random_blobs(detections_per_image - near.shape[0], generator)
        masks = torch.cat([near, far])  # (D, H, W)
        if image == 1:
            masks[-1] = False  # an empty predicted mask
        labels = torch.cat([gt_labels[copies] if num_gt else torch.zeros(0, dtype=torch.int64),
                            torch.randint(1, num_classes + 2, (far.shape[0],), generator=generator)])
        labels[labels == num_classes] = num_classes + 1  # class num_classes: ground truth only
        scores = torch.rand(masks.shape[0], generator=generator)
        if soft:  # probabilities: inside 0.5 + u/2, outside u/2 (u uniform): thresholding at 0.5 recovers them
            noise = torch.rand(masks.shape, generator=generator) / 2
            masks = masks.float() * 0.5 + noise  # (D, H, W) in [0, 1)
            masks[masks == 0.5] = 0.49  # keep "outside" strictly at or below the threshold
        predictions.append({"masks": masks, "scores": scores, "labels": labels})
        targets.append({"masks": gt_masks, "labels": gt_labels})
    return predictions, targets


def rle(mask):
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))


def coco_eval_segm(predictions, targets):
    """pycocotools' COCOeval(iouType="segm") on the same dicts (images numbered 1..N), silenced."""
    pytest.importorskip("pycocotools", reason="pycocotools is needed for the reference COCOeval")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    labels = sorted({int(label) for item in (*predictions, *targets) for label in item["labels"].tolist()})
    annotations, results = [], []
    for image, (prediction, target) in enumerate(zip(predictions, targets), start=1):
        for mask, label in zip(target["masks"], target["labels"].tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": image, "category_id": label,
                                "segmentation": rle(mask), "area": float(mask.sum()), "iscrowd": 0})
        binary = prediction["masks"] > 0.5 if prediction["masks"].is_floating_point() else prediction["masks"]
        for mask, score, label in zip(binary, prediction["scores"].double().tolist(), prediction["labels"].tolist()):
            results.append({"image_id": image, "category_id": label, "segmentation": rle(mask), "score": score})
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = {"images": [{"id": i, "height": CANVAS, "width": CANVAS}
                                           for i in range(1, len(targets) + 1)],
                                "annotations": annotations, "categories": [{"id": label} for label in labels]}
        ground_truth.createIndex()
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator, labels


def brute_force_iou(masks1, masks2):
    iou = torch.zeros(len(masks1), len(masks2), dtype=torch.float64)
    for i, a in enumerate(masks1):
        for j, b in enumerate(masks2):
            union = int((a | b).sum())
            iou[i, j] = int((a & b).sum()) / union if union else 0.0
    return iou


def test_mask_iou_equals_brute_force_count():
    generator = torch.Generator().manual_seed(0)
    masks1, masks2 = random_blobs(5, generator, canvas=40), random_blobs(4, generator, canvas=40)
    masks2[0] = masks1[1]  # an identical pair: IoU exactly 1
    masks2[1] = False  # an empty mask: IoU 0 with everything
    iou = mask_iou(masks1, masks2)
    assert iou.shape == (5, 4) and iou.dtype == torch.float64
    assert torch.equal(iou, brute_force_iou(masks1, masks2))
    assert iou[1, 0] == 1.0 and torch.all(iou[:, 1] == 0)
    assert torch.equal(mask_iou(masks2, masks1), iou.T)  # symmetric
    assert torch.equal(mask_iou(masks1.float(), masks2.to(torch.uint8)), iou)  # non-zero means inside


def test_mask_iou_equals_pycocotools():
    mask_utils = pytest.importorskip("pycocotools.mask", reason="pycocotools is needed for the reference")
    generator = torch.Generator().manual_seed(1)
    masks1, masks2 = random_blobs(6, generator), perturb(random_blobs(7, generator), generator)
    masks2[:3] = perturb(masks1[:3], generator)  # overlapping pairs, not only disjoint ones
    masks2[3] = False
    reference = mask_utils.iou([rle(m) for m in masks1], [rle(m) for m in masks2], [0] * len(masks2))
    assert np.array_equal(mask_iou(masks1, masks2).numpy(), reference)


def test_mask_iou_empty_inputs_and_bad_shapes():
    assert mask_iou(torch.zeros(0, 5, 5, dtype=torch.bool), torch.ones(3, 5, 5, dtype=torch.bool)).shape == (0, 3)
    assert mask_iou(torch.ones(2, 5, 5), torch.zeros(0, 1, 1)).shape == (2, 0)
    with pytest.raises(ValueError, match=r"must share \(H, W\)"):
        mask_iou(torch.ones(1, 5, 5), torch.ones(1, 5, 6))
    with pytest.raises(ValueError, match=r"masks1 must have shape \(N, H, W\)"):
        mask_iou(torch.ones(5, 5), torch.ones(1, 5, 5))
    assert torch.equal(mask_area(torch.eye(4).unsqueeze(0)), torch.tensor([4.0], dtype=torch.float64))


@pytest.mark.parametrize("seed, soft", [(0, False), (1, False), (2, True)])
def test_mask_map_equals_cocoeval_segm(seed, soft):
    predictions, targets = random_dataset(seed, soft=soft)
    evaluator, labels = coco_eval_segm(predictions, targets)
    ours = mask_average_precision(predictions, targets)
    for key, reference in zip(STAT_KEYS, evaluator.stats):
        assert ours[key] == pytest.approx(reference, abs=1e-4), key
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (T, R, K) area "all", 100 detections
    for k, label in enumerate(labels):
        per_class = precision[:, :, k]
        reference = per_class[per_class > -1].mean() if (per_class > -1).any() else -1.0
        assert ours["map_per_class"][label] == pytest.approx(reference, abs=1e-4), label
    assert ours["map_per_class"][3] == 0.0 and ours["map_per_class"][4] == -1.0  # never predicted / no gt
    assert 0.0 < ours["map"] < 1.0
    assert ours["map_small"] > -1 and ours["map_large"] > -1  # the area ranges are exercised


def test_perfect_masks_score_one_and_torchvision_layout_is_accepted():
    _, targets = random_dataset(0)
    predictions = [{"masks": t["masks"].float().unsqueeze(1),  # (K, 1, H, W) as torchvision returns them
                    "scores": torch.ones(len(t["labels"])), "labels": t["labels"]} for t in targets]
    ours = mask_average_precision(predictions, targets)
    for key in ("map", "map_50", "map_75", "mar_100"):
        assert ours[key] == pytest.approx(1.0)


def test_masks_of_boxes_give_box_map():
    """Filled rectangles: mask IoU is box IoU and pixel count is box area, so both metrics agree."""
    generator = torch.Generator().manual_seed(3)
    predictions, targets = [], []
    for _ in range(4):
        corners = torch.randint(0, 60, (6, 2, 2), generator=generator).sort(dim=1).values  # (D, 2, 2)
        corners[:, 1] += 1  # at least one pixel wide and high
        boxes = corners.transpose(1, 2).reshape(6, 4).float()[:, [0, 2, 1, 3]]  # (D, 4) x1 y1 x2 y2
        masks = torch.zeros(6, 64, 64, dtype=torch.bool)
        for k, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
            masks[k, y1:y2, x1:x2] = True
        labels = torch.randint(1, 3, (6,), generator=generator)
        predictions.append({"boxes": boxes[:4], "masks": masks[:4], "labels": labels[:4],
                            "scores": torch.rand(4, generator=generator)})
        targets.append({"boxes": boxes[2:], "masks": masks[2:], "labels": labels[2:]})
    ours, boxes_map = mask_average_precision(predictions, targets), mean_average_precision(predictions, targets)
    for key in STAT_KEYS:
        assert ours[key] == pytest.approx(boxes_map[key], abs=1e-12), key


def _one_image():
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 2:6, 2:6] = True
    return {"masks": mask, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}, \
        {"masks": mask.clone(), "labels": torch.tensor([1])}


@pytest.mark.parametrize("change, message", [
    (lambda p, t: ([p, p], [t]), "predictions has 2 images but targets has 1"),
    (lambda p, t: ([{k: v for k, v in p.items() if k != "masks"}], [t]), r"predictions\[0\] is missing \['masks'\]"),
    (lambda p, t: ([p], [{**t, "labels": torch.tensor([1, 2])}]), r"targets\[0\]\['labels'\] must be a tensor"),
    (lambda p, t: ([{**p, "masks": torch.ones(8, 8)}], [t]), r"predictions\[0\]\['masks'\] must have shape"),
    (lambda p, t: ([{**p, "masks": torch.ones(1, 8, 9)}], [t]), r"masks of one image must share"),
    (lambda p, t: ([{**p, "scores": torch.tensor([1])}], [t]), "must be a float tensor"),
    (lambda p, t: ([{**p, "labels": torch.tensor([1.0])}], [t]), "must be an integer tensor"),
])
def test_bad_inputs_raise_clear_errors(change, message):
    prediction, target = _one_image()
    predictions, targets = change(prediction, target)
    with pytest.raises(ValueError, match=message):
        mask_average_precision(predictions, targets)
    with pytest.raises(ValueError, match="mask_threshold"):
        mask_average_precision([prediction], [target], mask_threshold=1.5)
