"""Tests for companion/detection/nms.py: both NMS versions equal torchvision.ops, invariants, bad input."""

import pytest
import torch
import torchvision.ops as tv_ops
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.detection.boxes import box_iou
from companion.detection.nms import batched_nms, nms, nms_loop

NMS_FUNCTIONS = [nms, nms_loop]


def random_detections(n: int, dtype=torch.float32, seed: int = 0):
    """``n`` boxes clustered in a 100 x 100 image (so many overlap) and unique scores."""
    generator = torch.Generator().manual_seed(seed)
    top_left = torch.rand(n, 2, generator=generator, dtype=dtype) * 100  # (n, 2)
    size = torch.rand(n, 2, generator=generator, dtype=dtype) * 30 + 1  # (n, 2)
    boxes = torch.cat([top_left, top_left + size], dim=1)  # (n, 4)
    scores = torch.randperm(n, generator=generator).to(dtype) / max(n, 1)  # (n,) unique
    return boxes, scores


@pytest.mark.parametrize("nms_function", NMS_FUNCTIONS)
@pytest.mark.parametrize("n", [1, 2, 10, 100, 500])
@pytest.mark.parametrize("iou_threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nms_equals_torchvision(nms_function, n, iou_threshold, dtype):
    boxes, scores = random_detections(n, dtype, seed=n)
    kept = nms_function(boxes, scores, iou_threshold)
    assert torch.equal(kept, tv_ops.nms(boxes, scores, iou_threshold))
    assert kept.dtype == torch.int64 and kept.device == boxes.device


@pytest.mark.parametrize("block_size", [1, 2, 7, 64, 5000])
@pytest.mark.parametrize("iou_threshold", [0.0, 0.5, 1.0])
def test_nms_block_size_does_not_change_the_result(block_size, iou_threshold):
    boxes, scores = random_detections(1500, seed=3)  # many blocks of every size, and one larger block
    kept = nms(boxes, scores, iou_threshold, block_size=block_size)
    assert torch.equal(kept, tv_ops.nms(boxes, scores, iou_threshold))


def test_nms_with_tied_scores_keeps_the_earlier_box_first():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20.0, 20, 30, 30], [0.0, 0, 10, 11], [20.0, 20, 30, 31]])
    scores = torch.tensor([0.5, 0.5, 0.5, 0.5])  # stable sort: ties stay in input order
    for nms_function in NMS_FUNCTIONS:
        assert nms_function(boxes, scores, 0.5).tolist() == [0, 1]


@pytest.mark.parametrize("n, num_classes", [(1, 1), (20, 3), (200, 5), (500, 10)])
@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_batched_nms_equals_torchvision(n, num_classes, iou_threshold):
    boxes, scores = random_detections(n, seed=n)
    idxs = torch.randint(0, num_classes, (n,), generator=torch.Generator().manual_seed(1))
    kept = batched_nms(boxes, scores, idxs, iou_threshold)
    assert torch.equal(kept, tv_ops.batched_nms(boxes, scores, idxs, iou_threshold))


def test_batched_nms_separates_classes_with_negative_coordinates():
    boxes = torch.tensor([[-10.0, -10, -1, -1], [-10.0, -10, -1, -1], [-10.0, -10, -2, -2]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    kept = batched_nms(boxes, scores, torch.tensor([0, 1, 1]), iou_threshold=0.5)
    assert kept.tolist() == [0, 1]  # the class-1 copy survives the identical class-0 box


@pytest.mark.parametrize("nms_function", NMS_FUNCTIONS)
def test_empty_input_gives_empty_int64(nms_function):
    kept = nms_function(torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0, dtype=torch.float64), 0.5)
    assert kept.shape == (0,) and kept.dtype == torch.int64
    kept = batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)
    assert kept.shape == (0,) and kept.dtype == torch.int64


BOXES, SCORES = random_detections(3)


@pytest.mark.parametrize("nms_function", NMS_FUNCTIONS)
@pytest.mark.parametrize("boxes, scores, match", [
    (torch.tensor([[5.0, 0, 1, 1]]), torch.ones(1), "boxes has boxes with x2 < x1"),
    (torch.tensor([[0.0, 0, 1, float("nan")]]), torch.ones(1), "boxes contains NaN"),
    (torch.zeros(3, 5), SCORES, r"boxes must have shape \(N, 4\)"),
    (BOXES, torch.ones(2), "scores has 2 entries but boxes has 3 rows"),
    (BOXES, torch.ones(3, 1), r"scores must be a 1-D tensor"),
    (BOXES, torch.tensor([0.1, float("nan"), 0.3]), "scores contains NaN"),
])
def test_bad_input_raises_a_clear_error(nms_function, boxes, scores, match):
    with pytest.raises(ValueError, match=match):
        nms_function(boxes, scores, 0.5)
    with pytest.raises(ValueError, match=match):
        batched_nms(boxes, scores, torch.zeros(len(scores), dtype=torch.int64), 0.5)


@pytest.mark.parametrize("idxs, match", [
    (torch.zeros(2, dtype=torch.int64), r"idxs must be a 1-D tensor with one category per box \(3,\)"),
    (torch.zeros(3), "idxs must be an integer tensor"),
])
def test_batched_nms_bad_idxs(idxs, match):
    with pytest.raises(ValueError, match=match):
        batched_nms(BOXES, SCORES, idxs, 0.5)


@pytest.mark.parametrize("block_size", [0, -3, 2.5, True])
def test_nms_bad_block_size(block_size):
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        nms(BOXES, SCORES, 0.5, block_size=block_size)


@st.composite
def detections(draw):
    """Up to 30 float64 boxes with distinct scores, drawn in a small area so that many overlap."""
    n = draw(st.integers(1, 30))
    rows = []
    for _ in range(n):
        x1, y1 = draw(st.floats(0, 20)), draw(st.floats(0, 20))
        w, h = draw(st.floats(0.5, 15)), draw(st.floats(0.5, 15))
        rows.append([x1, y1, x1 + w, y1 + h])
    scores = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n, unique=True))
    return torch.tensor(rows, dtype=torch.float64), torch.tensor(scores, dtype=torch.float64)


@pytest.mark.parametrize("nms_function", NMS_FUNCTIONS)
@settings(max_examples=50, deadline=None, derandomize=True)
@given(detections(), st.sampled_from([0.1, 0.3, 0.5, 0.8]))
def test_nms_invariants(nms_function, boxes_and_scores, iou_threshold):
    boxes, scores = boxes_and_scores
    kept = nms_function(boxes, scores, iou_threshold)
    assert kept[0] == scores.argmax()  # the highest-scoring box is always kept
    assert (scores[kept].diff() < 0).all()  # by decreasing score
    iou = box_iou(boxes[kept], boxes[kept])  # (K, K)
    assert (iou.triu(diagonal=1) <= iou_threshold).all()  # no kept pair overlaps above the threshold
    dropped = torch.ones(len(boxes), dtype=torch.bool)
    dropped[kept] = False  # every dropped box overlaps some kept box above the threshold
    assert (box_iou(boxes[dropped], boxes[kept]) > iou_threshold).any(dim=1).all()
