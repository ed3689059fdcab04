"""Segmentation metrics: the confusion matrix against a brute-force count, mIoU and pixel accuracy
against torchmetrics, and clear errors on bad input."""

import math

import pytest
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from companion.segmentation.metrics import (confusion_matrix, evaluate_segmentation, mean_iou,
                                            per_class_iou, pixel_accuracy)


def random_masks(seed, num_classes=5, shape=(3, 9, 11), ignore_fraction=0.0, skip_class=None):
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_classes, shape, generator=generator)
    pred = torch.randint(0, num_classes, shape, generator=generator)
    if skip_class is not None:  # a class absent from both target and prediction
        target[target == skip_class] = 0
        pred[pred == skip_class] = 1
    if ignore_fraction:
        target[torch.rand(shape, generator=generator) < ignore_fraction] = 255
    return pred, target


def brute_force_confusion(pred, target, num_classes, ignore_index=255):
    counts = [[0] * num_classes for _ in range(num_classes)]
    for p, t in zip(pred.flatten().tolist(), target.flatten().tolist()):
        if t != ignore_index:
            counts[t][p] += 1
    return torch.tensor(counts)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ignore_fraction", [0.0, 0.2])
def test_confusion_matrix_equals_a_brute_force_count(seed, ignore_fraction):
    pred, target = random_masks(seed, ignore_fraction=ignore_fraction)
    matrix = confusion_matrix(pred, target, num_classes=5)
    assert matrix.dtype == torch.int64 and matrix.shape == (5, 5)
    assert torch.equal(matrix, brute_force_confusion(pred, target, 5))
    assert int(matrix.sum()) == int((target != 255).sum())


def test_confusion_matrix_without_ignore_index_and_any_shape():
    pred, target = random_masks(3, num_classes=4, shape=(50,))
    assert torch.equal(confusion_matrix(pred, target, 4, ignore_index=None),
                       brute_force_confusion(pred, target, 4, ignore_index=None))
    assert torch.equal(confusion_matrix(pred.to(torch.uint8), target.to(torch.uint8), 4),
                       confusion_matrix(pred, target, 4))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("ignore_fraction", [0.0, 0.25])
@pytest.mark.parametrize("skip_class", [None, 3])
def test_miou_and_pixel_accuracy_equal_torchmetrics(seed, ignore_fraction, skip_class):
    num_classes = 6
    pred, target = random_masks(seed, num_classes, ignore_fraction=ignore_fraction, skip_class=skip_class)
    matrix = confusion_matrix(pred, target, num_classes)
    jaccard = MulticlassJaccardIndex(num_classes, average="macro", ignore_index=255)
    accuracy = MulticlassAccuracy(num_classes, average="micro", ignore_index=255)
    assert mean_iou(matrix) == pytest.approx(float(jaccard(pred, target)), abs=1e-6)
    assert pixel_accuracy(matrix) == pytest.approx(float(accuracy(pred, target)), abs=1e-6)
    per_class = MulticlassJaccardIndex(num_classes, average="none", ignore_index=255)(pred, target)
    ours = per_class_iou(matrix)
    present = ~ours.isnan()
    assert torch.allclose(ours[present].float(), per_class[present], atol=1e-6)
    # a class absent from target and prediction: nan here, skipped by both means
    assert present.all() == (skip_class is None)


def test_miou_is_accumulated_over_the_split_not_averaged_per_image():
    pred, target = random_masks(5, num_classes=4, shape=(2, 8, 8))
    matrix = confusion_matrix(pred[0], target[0], 4) + confusion_matrix(pred[1], target[1], 4)
    assert torch.equal(matrix, confusion_matrix(pred, target, 4))


def test_hand_computed_example():
    target = torch.tensor([[0, 0, 0, 1], [0, 0, 2, 2]])
    pred = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 2]])
    matrix = confusion_matrix(pred, target, 4)
    # background: 4 hits, 5 true, 5 predicted -> 4/6; class 1: 1/2; class 2: 1/2; class 3 absent
    iou = per_class_iou(matrix)
    assert iou[:3].tolist() == pytest.approx([4 / 6, 1 / 2, 1 / 2])
    assert math.isnan(iou[3])
    assert mean_iou(matrix) == pytest.approx((4 / 6 + 1 / 2 + 1 / 2) / 3)
    assert pixel_accuracy(matrix) == pytest.approx(6 / 8)


def test_perfect_and_all_background_predictions():
    target = torch.zeros(4, 4, dtype=torch.int64)
    target[1:3, 1:3] = 1
    perfect = confusion_matrix(target, target, 2)
    assert mean_iou(perfect) == 1.0 and pixel_accuracy(perfect) == 1.0
    background = confusion_matrix(torch.zeros_like(target), target, 2)
    assert pixel_accuracy(background) == pytest.approx(12 / 16)
    assert mean_iou(background) == pytest.approx((12 / 16 + 0.0) / 2)


def test_bad_inputs_raise_clear_errors():
    pred, target = random_masks(0)
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(pred[:2], target, 5)
    with pytest.raises(ValueError, match="argmax"):
        confusion_matrix(pred.float(), target, 5)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(pred, target.float(), 5)
    with pytest.raises(ValueError, match="pred has classes outside"):
        confusion_matrix(pred + 1, target, 5)
    with pytest.raises(ValueError, match="target has classes outside"):
        confusion_matrix(pred, target.masked_fill(target == 0, 7), 5)
    with pytest.raises(ValueError, match="target has classes outside"):
        confusion_matrix(pred, target.masked_fill(target == 0, 255), 5, ignore_index=None)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(pred, target, 0)
    with pytest.raises(ValueError, match="ignore_index"):
        confusion_matrix(pred, target, 5, ignore_index=0)
    with pytest.raises(ValueError, match="square"):
        mean_iou(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="no pixels"):
        mean_iou(confusion_matrix(pred, torch.full_like(target, 255), 5))


class FixedSegmenter(nn.Module):
    """Predicts class 1 where the first channel is bright, else background."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, images):
        score = self.scale * (images[:, :1] - 0.5)  # (B, 1, H, W)
        return torch.cat([-score, score, torch.full_like(score, -100.0)], dim=1)  # (B, 3, H, W)


def test_evaluate_segmentation_accumulates_one_matrix_and_restores_the_mode():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 7, 5, generator=generator)
    masks = torch.randint(0, 3, (6, 7, 5), generator=generator)
    masks[0, 0, 0] = 255
    loader = [(images[:4], masks[:4]), (images[4:], masks[4:])]
    model = FixedSegmenter().train()
    result = evaluate_segmentation(model, loader, num_classes=3)
    assert model.training
    expected = confusion_matrix((images[:, 0] > 0.5).long(), masks, 3)
    assert torch.equal(result["confusion"], expected)
    assert result["miou"] == pytest.approx(mean_iou(expected))
    assert result["pixel_accuracy"] == pytest.approx(pixel_accuracy(expected))
    assert len(result["per_class_iou"]) == 3
    with pytest.raises(ValueError, match="logits"):
        evaluate_segmentation(model, loader, num_classes=4)
