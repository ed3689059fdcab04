"""Tests for companion/detection/roi.py: roi_align and roi_pool equal torchvision.ops, bad input, empty input."""

import pytest
import torch
import torchvision.ops as tv_ops

from companion.detection.roi import roi_align, roi_pool


def random_rois(num_images: int, num_rois: int, height: int, width: int, spatial_scale: float,
                generator: torch.Generator) -> torch.Tensor:
    """``(K, 5)`` regions in image pixels, some partly (or wholly) outside the image."""
    image_size = torch.tensor([width, height]) / spatial_scale  # (2,)
    top_left = torch.rand(num_rois, 2, generator=generator) * image_size * 1.4 - image_size * 0.2  # (K, 2)
    size = torch.rand(num_rois, 2, generator=generator) * image_size * 0.8  # (K, 2)
    index = torch.randint(0, num_images, (num_rois, 1), generator=generator).float()  # (K, 1)
    return torch.cat([index, top_left, top_left + size], dim=1)  # (K, 5)


CASES = [(0, 7, 9, 2), (1, 12, 12, 3), (2, 5, 16, 7), (3, 20, 6, (3, 5))]


@pytest.mark.parametrize("seed, height, width, output_size", CASES)
@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 0.25])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_equals_torchvision(seed, height, width, output_size, spatial_scale, sampling_ratio, aligned):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 3, height, width, generator=generator)
    rois = random_rois(2, 15, height, width, spatial_scale, generator)
    ours = roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)
    theirs = tv_ops.roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed, height, width, output_size", CASES)
@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 0.25])
def test_roi_pool_equals_torchvision_exactly(seed, height, width, output_size, spatial_scale):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 3, height, width, generator=generator)
    rois = random_rois(2, 15, height, width, spatial_scale, generator)
    ours = roi_pool(features, rois, output_size, spatial_scale)
    assert torch.equal(ours, tv_ops.roi_pool(features, rois, output_size, spatial_scale))


def test_roi_pool_rounds_halves_away_from_zero_as_c_does():
    features = torch.arange(36.0).reshape(1, 1, 6, 6)
    rois = torch.tensor([[0, 0.5, 0.5, 2.5, 2.5], [0, 1.5, 1.5, 4.5, 4.5], [0, -0.5, -0.5, 3.5, 3.5]])
    assert torch.equal(roi_pool(features, rois, 2), tv_ops.roi_pool(features, rois, 2))


def test_list_of_boxes_and_float64_and_gradient_equal_torchvision():
    generator = torch.Generator().manual_seed(5)
    features = torch.randn(2, 4, 10, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    rois = random_rois(2, 6, 10, 8, 0.5, generator).double()
    boxes = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    ordered = torch.cat([rois[rois[:, 0] == i] for i in range(2)])
    ours = roi_align(features, boxes, 3, 0.5, -1, True)
    theirs = tv_ops.roi_align(features, ordered, 3, 0.5, -1, True)
    torch.testing.assert_close(ours, theirs)
    weights = torch.randn(ours.shape, generator=generator, dtype=torch.float64)
    (ours_grad,) = torch.autograd.grad((ours * weights).sum(), features)
    (theirs_grad,) = torch.autograd.grad((theirs * weights).sum(), features)
    torch.testing.assert_close(ours_grad, theirs_grad)
    assert torch.equal(roi_pool(features, boxes, 2, 0.5), tv_ops.roi_pool(features, ordered, 2, 0.5))


@pytest.mark.parametrize("aligned", [False, True])
def test_degenerate_and_outside_regions_equal_torchvision(aligned):
    features = torch.randn(1, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    rois = torch.tensor([[0, 4.0, 4, 1, 1], [0, 2, 2, 2, 2], [0, 7, 7, 9, 9], [0, -3, -3, -1, -1],
                         [0, 2.2, 1, 2.3, 5]])  # inverted, a point, outside, outside, a thin sliver
    for sampling_ratio in (-1, 2):
        torch.testing.assert_close(roi_align(features, rois, 2, 1.0, sampling_ratio, aligned),
                                   tv_ops.roi_align(features, rois, 2, 1.0, sampling_ratio, aligned),
                                   rtol=0, atol=1e-5)
    assert torch.equal(roi_pool(features, rois, 2), tv_ops.roi_pool(features, rois, 2))


def test_constant_map_pools_to_the_constant_inside_the_image():
    features = torch.full((1, 2, 8, 8), 3.0)
    rois = torch.tensor([[0, 1.0, 1.0, 6.0, 5.0]])
    assert torch.allclose(roi_align(features, rois, 2, aligned=True), torch.full((1, 2, 2, 2), 3.0))
    assert torch.equal(roi_pool(features, rois, 2), torch.full((1, 2, 2, 2), 3.0))


def test_empty_rois_give_empty_output():
    features = torch.randn(2, 3, 5, 5)
    assert roi_align(features, torch.zeros(0, 5), (2, 3)).shape == (0, 3, 2, 3)
    assert roi_pool(features, torch.zeros(0, 5), (2, 3)).shape == (0, 3, 2, 3)
    assert roi_align(features, [torch.zeros(0, 4), torch.zeros(0, 4)], 2).shape == (0, 3, 2, 2)


@pytest.mark.parametrize("function", [roi_align, roi_pool])
def test_bad_input_raises_a_clear_error(function):
    features = torch.randn(2, 3, 5, 5)
    with pytest.raises(ValueError, match=r"input must be a floating-point feature map \(B, C, H, W\)"):
        function(torch.randn(3, 5, 5), torch.zeros(1, 5), 2)
    with pytest.raises(ValueError, match=r"boxes must be a \(K, 5\) tensor"):
        function(features, torch.zeros(3, 4), 2)
    with pytest.raises(ValueError, match=r"boxes\[1\] must be a \(K_i, 4\) tensor"):
        function(features, [torch.zeros(1, 4), torch.zeros(1, 5)], 2)
    with pytest.raises(ValueError, match=r"batch index in boxes\[:, 0\] must be an integer in \[0, 2\)"):
        function(features, torch.tensor([[2.0, 0, 0, 1, 1]]), 2)
    with pytest.raises(ValueError, match="boxes contains NaN"):
        function(features, torch.tensor([[0.0, 0, 0, float("nan"), 1]]), 2)
    with pytest.raises(ValueError, match="output_size must be a positive int"):
        function(features, torch.zeros(1, 5), 0)
