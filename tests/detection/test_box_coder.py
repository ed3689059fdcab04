"""Tests for companion/detection/box_coder.py: equal to torchvision's BoxCoder, round trip, bad input."""

import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder as TorchvisionBoxCoder

from companion.detection.box_coder import BoxCoder

WEIGHTS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (0.5, 2.0, 3.0, 0.25)]


def random_boxes(n: int, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    top_left = torch.rand(n, 2, generator=generator, dtype=dtype) * 200 - 50  # (n, 2)
    size = torch.rand(n, 2, generator=generator, dtype=dtype) * 80 + 2  # (n, 2)
    return torch.cat([top_left, top_left + size], dim=1)  # (n, 4)


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("n", [1, 7, 300])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_encode_and_decode_equal_torchvision(weights, n, dtype):
    generator = torch.Generator().manual_seed(n)
    gt, anchors = random_boxes(n, generator, dtype), random_boxes(n, generator, dtype)
    ours, theirs = BoxCoder(weights), TorchvisionBoxCoder(weights)
    codes = ours.encode_single(gt, anchors)
    assert codes.shape == (n, 4) and codes.dtype == dtype
    torch.testing.assert_close(codes, theirs.encode_single(gt, anchors), rtol=1e-6, atol=1e-6)
    deltas = torch.randn(n, 4 * 3, generator=generator, dtype=dtype) * 2  # three boxes per reference
    torch.testing.assert_close(ours.decode_single(deltas, anchors), theirs.decode_single(deltas, anchors),
                               rtol=1e-6, atol=1e-5)


def test_batched_forms_equal_torchvision():
    generator = torch.Generator().manual_seed(0)
    gt = [random_boxes(n, generator) for n in (3, 0, 5)]
    anchors = [random_boxes(n, generator) for n in (3, 0, 5)]
    ours, theirs = BoxCoder((10.0, 10.0, 5.0, 5.0)), TorchvisionBoxCoder((10.0, 10.0, 5.0, 5.0))
    codes = ours.encode(gt, anchors)
    assert [c.shape[0] for c in codes] == [3, 0, 5]
    for a, b in zip(codes, theirs.encode(gt, anchors)):
        torch.testing.assert_close(a, b)
    deltas = torch.randn(8, 4, generator=generator)
    decoded = ours.decode(deltas, anchors)
    assert decoded.shape == (8, 1, 4)
    torch.testing.assert_close(decoded, theirs.decode(deltas, anchors))


@pytest.mark.parametrize("weights", WEIGHTS)
def test_decode_inverts_encode(weights):
    generator = torch.Generator().manual_seed(1)
    gt, anchors = random_boxes(200, generator, torch.float64), random_boxes(200, generator, torch.float64)
    coder = BoxCoder(weights, bbox_xform_clip=math.inf)
    torch.testing.assert_close(coder.decode_single(coder.encode_single(gt, anchors), anchors), gt)


def test_a_box_encodes_to_zero_against_itself_and_the_clip_bounds_the_size():
    boxes = torch.tensor([[10.0, 20, 30, 60], [0, 0, 1, 1]])
    assert torch.equal(BoxCoder().encode_single(boxes, boxes), torch.zeros(2, 4))
    huge = BoxCoder().decode_single(torch.tensor([[0.0, 0, 50, 50]]), torch.tensor([[0.0, 0, 16, 16]]))
    assert torch.allclose(huge[0, 2] - huge[0, 0], torch.tensor(1000.0))  # 16 * exp(log(1000 / 16))


def test_empty_inputs_give_empty_outputs():
    coder = BoxCoder()
    assert coder.encode_single(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)
    assert coder.decode_single(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)
    assert coder.decode(torch.zeros(0, 4), [torch.zeros(0, 4)]).shape == (0, 4)


def test_bad_input_raises_a_clear_error():
    boxes = torch.tensor([[0.0, 0, 4, 4], [1, 1, 5, 5]])
    with pytest.raises(ValueError, match="weights must be four positive numbers"):
        BoxCoder((1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="weights must be four positive numbers"):
        BoxCoder((1.0, 0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="reference_boxes has 2 rows but proposals has 1"):
        BoxCoder().encode_single(boxes, boxes[:1])
    with pytest.raises(ValueError, match="proposals has boxes with x2 < x1"):
        BoxCoder().encode_single(boxes, boxes[:, [2, 1, 0, 3]])
    with pytest.raises(ValueError, match=r"rel_codes must have shape \(2, 4 \* K\)"):
        BoxCoder().decode_single(torch.zeros(2, 5), boxes)
    with pytest.raises(ValueError, match="boxes must be a list"):
        BoxCoder().decode(torch.zeros(2, 4), boxes)
    with pytest.raises(ValueError, match="reference_boxes has 2 images but proposals has 1"):
        BoxCoder().encode([boxes, boxes], [boxes])
