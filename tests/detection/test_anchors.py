"""Tests for companion/detection/anchors.py: equal to torchvision's AnchorGenerator and to d2l's multibox_prior."""

import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import (
    AnchorGenerator as TorchvisionAnchorGenerator,
)
from torchvision.models.detection.image_list import ImageList

from companion.detection.anchors import (
    AnchorGenerator,
    cell_anchors,
    grid_anchors,
    multibox_prior,
)

CONFIGS = [
    (((32, 64, 128),), ((0.5, 1.0, 2.0),), [(12, 12)], (96, 96)),
    (((16,), (32,), (64,)), ((0.5, 1.0, 2.0),) * 3, [(24, 24), (12, 12), (6, 6)], (96, 96)),
    (((20, 40),), ((0.25, 1.0, 3.0),), [(5, 7)], (80, 112)),
    (((8, 24), (48, 96)), ((1.0,), (0.5, 2.0)), [(13, 9), (4, 3)], (100, 75)),
]


@pytest.mark.parametrize("sizes, ratios, feature_sizes, image_size", CONFIGS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_anchor_generator_equals_torchvision(sizes, ratios, feature_sizes, image_size, dtype):
    images = torch.zeros(2, 3, *image_size)
    features = [torch.zeros(2, 4, h, w, dtype=dtype) for h, w in feature_sizes]
    ours = AnchorGenerator(sizes, ratios)(images, features)
    image_list = ImageList(images, [image_size] * 2)
    theirs = TorchvisionAnchorGenerator(sizes, ratios)(image_list, features)
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs):
        assert a.dtype == dtype and torch.equal(a, b)
    assert AnchorGenerator(sizes, ratios).num_anchors_per_location() == \
        TorchvisionAnchorGenerator(sizes, ratios).num_anchors_per_location()
    assert torch.equal(AnchorGenerator(sizes, ratios)(image_list, features)[0], theirs[0])  # ImageList too


def test_flat_sizes_mean_one_size_per_feature_map_as_in_torchvision():
    ours = AnchorGenerator((16, 32), (0.5, 1.0, 2.0))
    assert ours.sizes == ((16,), (32,)) and ours.aspect_ratios == ((0.5, 1.0, 2.0),) * 2


def test_cell_anchors_have_the_asked_area_and_ratio():
    anchors = cell_anchors((64, 128), (0.5, 1.0, 2.0), dtype=torch.float64)  # (6, 4), ratio-major
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    expected_area = torch.tensor([64.0, 128] * 3, dtype=torch.float64) ** 2
    assert torch.allclose(widths * heights, expected_area, rtol=0.03)  # rounding moves it a little
    assert torch.allclose(heights / widths, torch.tensor([0.5, 0.5, 1, 1, 2, 2], dtype=torch.float64), rtol=0.03)
    assert torch.equal(anchors[:, :2], -anchors[:, 2:])  # centred on (0, 0)


def test_grid_anchors_are_shifted_by_the_stride():
    anchors = grid_anchors((3, 4), (8, 10), sizes=(16,), aspect_ratios=(1.0,))  # (12, 4)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2  # (12, 2)
    expected_x = torch.arange(4.0).repeat(3) * 10
    expected_y = torch.arange(3.0).repeat_interleave(4) * 8
    assert torch.equal(centres, torch.stack([expected_x, expected_y], dim=1))


@pytest.mark.parametrize("sizes, ratios, height, width", [
    ((0.75, 0.5, 0.25), (1.0, 2.0, 0.5), 5, 7),
    ((0.2,), (1.0,), 4, 4),
    ((0.3, 0.1), (4.0,), 3, 6),
])
def test_multibox_prior_equals_d2l(sizes, ratios, height, width):
    d2l_torch = pytest.importorskip("d2l.torch")
    feature_map = torch.zeros(1, 3, height, width)
    ours = multibox_prior(feature_map, sizes, ratios)
    assert ours.shape == (1, height * width * (len(sizes) + len(ratios) - 1), 4)
    assert torch.allclose(ours, d2l_torch.multibox_prior(feature_map, sizes, ratios), atol=1e-6)


@pytest.mark.parametrize("sizes, ratios", [((0.5,), (0.25, 1.0, 4.0)), ((0.25, 0.5, 0.75), (1.0,))])
def test_multibox_prior_is_torchvision_shifted_by_half_a_cell_where_they_coincide(sizes, ratios):
    # They coincide when either list has one entry (n + m - 1 = n * m), d2l's ratio w/h is the inverse
    # of torchvision's h/w, and torchvision's rounding changes nothing (whole-pixel half-sizes).
    height = width = 4
    stride = 16
    pixel_sizes = tuple(s * height * stride for s in sizes)  # d2l sizes are fractions of the image height
    torchvision_ratios = tuple(1 / r for r in ratios)
    anchors = grid_anchors((height, width), stride, pixel_sizes, torchvision_ratios)  # (H*W*A, 4)
    d2l_style = multibox_prior(torch.zeros(1, 1, height, width), sizes, ratios)[0] * (width * stride)
    assert torch.allclose(anchors + stride / 2, d2l_style, atol=1e-4)


@pytest.mark.parametrize("sizes, ratios, match", [
    ((), (1.0,), "at least one value"),
    ((32, -1), (1.0,), "positive finite"),
    ((32,), (0.0,), "positive finite"),
    ((32,), (float("inf"),), "positive finite"),
])
def test_bad_sizes_or_ratios_raise(sizes, ratios, match):
    with pytest.raises(ValueError, match=match):
        grid_anchors((2, 2), 8, sizes, ratios)
    with pytest.raises(ValueError, match=match):
        multibox_prior(torch.zeros(1, 1, 2, 2), sizes, ratios)


def test_bad_generator_arguments_raise():
    with pytest.raises(ValueError, match="sizes has 2 entries"):
        AnchorGenerator(((16,), (32,)), ((1.0,), (1.0,), (2.0,)))
    generator = AnchorGenerator()
    with pytest.raises(ValueError, match="got 2 feature maps"):
        generator(torch.zeros(1, 3, 32, 32), [torch.zeros(1, 1, 4, 4)] * 2)
    with pytest.raises(ValueError, match="images must be a"):
        generator(torch.zeros(3, 32, 32), [torch.zeros(1, 1, 4, 4)])
    with pytest.raises(ValueError, match="stride must be positive"):
        grid_anchors((2, 2), 0, (16,), (1.0,))
    with pytest.raises(ValueError, match="feature_size must be"):
        grid_anchors((2,), 8, (16,), (1.0,))


def test_empty_feature_map_gives_no_anchors():
    assert grid_anchors((0, 5), 8, (16, 32), (0.5, 1.0)).shape == (0, 4)
    anchors = AnchorGenerator()(torch.zeros(3, 3, 32, 32), [torch.zeros(3, 1, 4, 4)])
    assert len(anchors) == 3 and anchors[0].shape == (4 * 4 * 9, 4)
    assert math.isclose(float(anchors[0][4, 2] - anchors[0][4, 0]), 64.0)  # size 64, ratio 1
