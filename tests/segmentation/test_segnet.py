"""SegNet: max-unpooling with the encoder's indices, any input size."""

import pytest
import torch
import torch.nn.functional as F

from companion.segmentation.segnet import SegNet, segnet_mini, segnet_vgg16
from seg_model_checks import check_channels_last_equals_contiguous, check_every_parameter_receives_a_gradient


def test_unpooling_with_the_indices_puts_each_maximum_back_where_it_was():
    x = torch.tensor([[[[1.0, 5.0, 2.0, 0.0],
                        [3.0, 4.0, 8.0, 1.0],
                        [0.0, 0.0, 1.0, 1.0],
                        [7.0, 0.0, 2.0, 3.0]]]])
    pooled, indices = F.max_pool2d(x, 2, stride=2, return_indices=True)
    assert torch.equal(pooled, torch.tensor([[[[5.0, 8.0], [7.0, 3.0]]]]))
    assert torch.equal(indices, torch.tensor([[[[1, 6], [12, 15]]]]))  # flat positions in the 4x4 map
    restored = F.max_unpool2d(pooled, indices, 2, stride=2)
    expected = torch.tensor([[[[0.0, 5.0, 0.0, 0.0],
                               [0.0, 0.0, 8.0, 0.0],
                               [0.0, 0.0, 0.0, 0.0],
                               [7.0, 0.0, 0.0, 3.0]]]])
    assert torch.equal(restored, expected)
    # Every maximum is back at its position, everything else is zero.
    assert torch.equal(restored, torch.where(restored != 0, x, torch.zeros_like(x)))


def test_odd_sizes_are_restored_by_output_size():
    x = torch.rand(1, 2, 5, 7)
    pooled, indices = F.max_pool2d(x, 2, stride=2, return_indices=True)  # (1, 2, 2, 3)
    restored = F.max_unpool2d(pooled, indices, 2, stride=2, output_size=x.shape[-2:])
    assert restored.shape == x.shape
    assert restored[..., -1, :].abs().sum() == 0 and restored[..., :, -1].abs().sum() == 0  # floored away


@pytest.mark.parametrize("size", [(37, 53), (96, 96), (17, 19)])
def test_segnet_returns_logits_at_the_input_size(size):
    torch.manual_seed(0)
    model = segnet_mini(6).eval()
    logits = model(torch.rand(2, 3, *size))
    assert logits.shape == (2, 6, *size)
    assert torch.isfinite(logits).all()


def test_every_parameter_receives_a_gradient():
    torch.manual_seed(0)
    check_every_parameter_receives_a_gradient(segnet_mini(4), 4, (33, 41))


def test_channels_last_equals_contiguous():
    torch.manual_seed(0)
    check_channels_last_equals_contiguous(segnet_mini(5).eval(), (48, 40))


def test_paper_parameter_count():
    # VGG16's 13 convolutions (14.7M) and a mirrored decoder: about 29.5M parameters (the paper's Table 6).
    with torch.device("meta"):
        model = segnet_vgg16()  # CamVid's 11 classes
    assert 29.3e6 < sum(p.numel() for p in model.parameters()) < 29.6e6


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="stages"):
        SegNet(num_classes=2, stages=())
    with pytest.raises(ValueError, match="at least 16"):
        segnet_mini(2)(torch.rand(1, 3, 15, 40))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        segnet_mini(2)(torch.rand(1, 1, 32, 32))
