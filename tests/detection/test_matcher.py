"""Tests for companion/detection/matcher.py: Matcher equals torchvision's, match_anchors' rules, bad input."""

import pytest
import torch
from torchvision.models.detection._utils import Matcher as TorchvisionMatcher

from companion.detection.boxes import box_iou
from companion.detection.matcher import Matcher, match_anchors


def random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    top_left = torch.rand(n, 2, generator=generator) * 80  # (n, 2)
    size = torch.rand(n, 2, generator=generator) * 30 + 4  # (n, 2)
    return torch.cat([top_left, top_left + size], dim=1)  # (n, 4)


@pytest.mark.parametrize("thresholds", [(0.7, 0.3), (0.5, 0.5), (0.5, 0.4), (0.6, 0.0)])
@pytest.mark.parametrize("allow_low_quality_matches", [False, True])
@pytest.mark.parametrize("num_gt, num_anchors", [(1, 50), (4, 300), (12, 1000)])
def test_matcher_equals_torchvision(thresholds, allow_low_quality_matches, num_gt, num_anchors):
    generator = torch.Generator().manual_seed(num_gt)
    iou = box_iou(random_boxes(num_gt, generator), random_boxes(num_anchors, generator))  # (M, N)
    ours = Matcher(*thresholds, allow_low_quality_matches)(iou)
    theirs = TorchvisionMatcher(*thresholds, allow_low_quality_matches)(iou)
    assert ours.dtype == torch.int64 and torch.equal(ours, theirs)


def test_matcher_with_ties_equals_torchvision():
    iou = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.2, 0.0, 0.6, 0.1]])  # gt 0's best: anchors 0 and 1, tied
    for allow in (False, True):
        assert torch.equal(Matcher(0.7, 0.3, allow)(iou.clone()), TorchvisionMatcher(0.7, 0.3, allow)(iou.clone()))
    assert Matcher(0.7, 0.3, True)(iou).tolist() == [0, 0, 1, -1]  # both tied anchors and gt 1's best


def test_matcher_labels():
    iou = torch.tensor([[0.9, 0.5, 0.1]])
    assert Matcher(0.7, 0.3)(iou).tolist() == [0, Matcher.BETWEEN_THRESHOLDS, Matcher.BELOW_LOW_THRESHOLD]


def test_matcher_empty_input_raises_as_torchvision():
    with pytest.raises(ValueError, match="No ground-truth boxes"):
        Matcher(0.7, 0.3)(torch.zeros(0, 5))
    with pytest.raises(ValueError, match="No proposal boxes"):
        Matcher(0.7, 0.3)(torch.zeros(2, 0))


def test_matcher_bad_input():
    with pytest.raises(ValueError, match="low_threshold"):
        Matcher(0.3, 0.7)
    with pytest.raises(ValueError, match="match_quality_matrix must be"):
        Matcher(0.7, 0.3)(torch.zeros(5))


def test_match_anchors_rules():
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 9, 10], [50, 50, 60, 60], [100, 100, 110, 110],
                            [200, 200, 210, 210]])
    gt = torch.tensor([[0.0, 0, 10, 10], [100, 100, 130, 130]])
    matches = match_anchors(anchors, gt, iou_threshold=0.5)
    # anchors 0, 1 overlap gt 0 enough; anchor 3 is gt 1's best (IoU 1/9) and is forced; 2 and 4 are background
    assert matches.tolist() == [0, 0, -1, 1, -1]
    assert match_anchors(anchors, gt[:0]).tolist() == [-1] * 5  # no objects: all background
    assert match_anchors(anchors[:0], gt).shape == (0,)


def test_match_anchors_every_gt_gets_an_anchor_and_agrees_with_matcher_above_threshold():
    generator = torch.Generator().manual_seed(3)
    anchors, gt = random_boxes(400, generator), random_boxes(6, generator)
    matches = match_anchors(anchors, gt, 0.5)
    assert set(matches[matches >= 0].tolist()) == set(range(6))
    iou = box_iou(gt, anchors)  # (M, N)
    strict = Matcher(0.5, 0.5)(iou)  # no forced matches
    above = strict >= 0
    assert torch.equal(matches[above], strict[above])


def test_match_anchors_bad_input():
    with pytest.raises(ValueError, match="gt_boxes has boxes with x2 < x1"):
        match_anchors(torch.zeros(2, 4), torch.tensor([[5.0, 0, 1, 1]]))
    with pytest.raises(ValueError, match=r"anchors must have shape \(N, 4\)"):
        match_anchors(torch.zeros(2, 5), torch.zeros(1, 4))
