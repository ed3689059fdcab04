"""Tests for companion/detection/boxes.py: equal to torchvision.ops, IoU/GIoU invariants, bad input."""

import itertools

import pytest
import torch
import torchvision.ops as tv_ops
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.detection.boxes import box_area, box_convert, box_iou, generalized_box_iou

FORMATS = ["xyxy", "xywh", "cxcywh"]
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-6}


def random_boxes(n: int, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    """``(n, 4)`` valid xyxy boxes in a 100 x 100 image, widths and heights in [1, 31]."""
    generator = torch.Generator().manual_seed(seed)
    top_left = torch.rand(n, 2, generator=generator, dtype=dtype) * 100  # (n, 2)
    size = torch.rand(n, 2, generator=generator, dtype=dtype) * 30 + 1  # (n, 2)
    return torch.cat([top_left, top_left + size], dim=1)  # (n, 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("in_fmt, out_fmt", list(itertools.permutations(FORMATS, 2)))
def test_box_convert_equals_torchvision_and_round_trips(in_fmt, out_fmt, dtype):
    boxes = tv_ops.box_convert(random_boxes(50, dtype), "xyxy", in_fmt)  # (50, 4) in in_fmt
    tol = TOLERANCE[dtype]
    converted = box_convert(boxes, in_fmt, out_fmt)
    torch.testing.assert_close(converted, tv_ops.box_convert(boxes, in_fmt, out_fmt), atol=tol, rtol=tol)
    torch.testing.assert_close(box_convert(converted, out_fmt, in_fmt), boxes, atol=tol, rtol=tol)


def test_box_convert_same_format_is_a_copy():
    boxes = random_boxes(5)
    converted = box_convert(boxes, "xyxy", "xyxy")
    assert torch.equal(converted, boxes) and converted.data_ptr() != boxes.data_ptr()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_area_iou_giou_equal_torchvision(dtype):
    boxes1, boxes2 = random_boxes(40, dtype, seed=1), random_boxes(30, dtype, seed=2)
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(box_area(boxes1), tv_ops.box_area(boxes1), atol=tol, rtol=tol)
    torch.testing.assert_close(box_iou(boxes1, boxes2), tv_ops.box_iou(boxes1, boxes2), atol=tol, rtol=tol)
    torch.testing.assert_close(generalized_box_iou(boxes1, boxes2),
                               tv_ops.generalized_box_iou(boxes1, boxes2), atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_preserved(dtype):
    boxes1, boxes2 = random_boxes(4, dtype), random_boxes(3, dtype, seed=1)
    for result, shape in [(box_area(boxes1), (4,)), (box_iou(boxes1, boxes2), (4, 3)),
                          (generalized_box_iou(boxes1, boxes2), (4, 3)),
                          (box_convert(boxes1, "xyxy", "cxcywh"), (4, 4))]:
        assert result.dtype == dtype and result.device == boxes1.device and result.shape == shape


def test_empty_inputs_give_empty_results():
    empty, three = torch.zeros(0, 4), random_boxes(3, torch.float32)
    assert box_area(empty).shape == (0,)
    assert box_iou(empty, three).shape == (0, 3) and box_iou(three, empty).shape == (3, 0)
    assert generalized_box_iou(empty, three).shape == (0, 3)
    assert box_convert(empty, "xyxy", "xywh").shape == (0, 4)
    assert box_iou(empty, three).dtype == torch.float32


@pytest.mark.parametrize("call, match", [
    (lambda: box_iou(torch.tensor([[5.0, 0, 1, 1]]), random_boxes(2)), "boxes1 has boxes with x2 < x1"),
    (lambda: box_iou(random_boxes(2), torch.tensor([[0.0, 5, 1, 1]])), "boxes2 has boxes with x2 < x1"),
    (lambda: box_area(torch.tensor([[0.0, float("nan"), 1, 1]])), "boxes contains NaN"),
    (lambda: box_area(torch.zeros(3, 5)), r"boxes must have shape \(N, 4\), got \(3, 5\)"),
    (lambda: box_area(torch.zeros(4)), r"boxes must have shape \(N, 4\), got \(4,\)"),
    (lambda: box_area(torch.zeros(2, 4, dtype=torch.int64)), "floating-point"),
    (lambda: generalized_box_iou([[0, 0, 1, 1]], random_boxes(1)), "boxes1 must be a torch.Tensor"),
    (lambda: box_convert(random_boxes(2), "xyxy", "xywhr"), "out_fmt must be one of"),
    (lambda: box_convert(random_boxes(2), "yxyx", "xyxy"), "in_fmt must be one of"),
    (lambda: box_convert(torch.tensor([[0.0, 0, -1, 2]]), "xywh", "xyxy"), "negative width or height"),
])
def test_bad_input_raises_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


coordinate = st.floats(0, 100, allow_nan=False, allow_infinity=False)


@st.composite
def xyxy_boxes(draw, min_size: int = 1, max_size: int = 8) -> torch.Tensor:
    """``(n, 4)`` float64 xyxy boxes with width and height at least 0.01 (so unions are never 0)."""
    n = draw(st.integers(min_size, max_size))
    rows = []
    for _ in range(n):
        x1, y1 = draw(coordinate), draw(coordinate)
        w, h = draw(st.floats(0.01, 50)), draw(st.floats(0.01, 50))
        rows.append([x1, y1, x1 + w, y1 + h])
    return torch.tensor(rows, dtype=torch.float64)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(xyxy_boxes(), xyxy_boxes())
def test_iou_is_symmetric_and_in_unit_interval(boxes1, boxes2):
    iou = box_iou(boxes1, boxes2)
    torch.testing.assert_close(iou, box_iou(boxes2, boxes1).T)
    assert (iou >= 0).all() and (iou <= 1 + 1e-12).all()


@settings(max_examples=50, deadline=None, derandomize=True)
@given(xyxy_boxes())
def test_iou_with_itself_is_one(boxes):
    torch.testing.assert_close(box_iou(boxes, boxes).diagonal(), torch.ones(len(boxes), dtype=boxes.dtype))


@settings(max_examples=50, deadline=None, derandomize=True)
@given(xyxy_boxes(), xyxy_boxes())
def test_giou_in_minus_one_one_and_at_most_iou(boxes1, boxes2):
    giou = generalized_box_iou(boxes1, boxes2)
    assert (giou >= -1 - 1e-12).all() and (giou <= 1 + 1e-12).all()
    assert (giou <= box_iou(boxes1, boxes2) + 1e-12).all()
