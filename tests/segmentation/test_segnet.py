"""SegNet: max-unpooling with the encoder's indices, any input size."""

import pytest
import torch
import torch.nn.functional as F

from companion.segmentation.segnet import SegNet, segnet_mini, segnet_vgg16


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
    model = segnet_mini(4)
    loss = F.cross_entropy(model(torch.rand(2, 3, 33, 41)), torch.randint(0, 4, (2, 33, 41)))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_channels_last_equals_contiguous():
    torch.manual_seed(0)
    model = segnet_mini(5).eval()
    x = torch.rand(2, 3, 48, 40)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    actual = model(x.to(memory_format=torch.channels_last))
    scale = expected.abs().max()
    torch.testing.assert_close(actual / scale, expected / scale, atol=1e-5, rtol=0)


def test_paper_parameter_count():
    # VGG16's 13 convolutions (14.7M) and a mirrored decoder: about 29.5M parameters (the paper's Table 6).
    with torch.device("meta"):
        model = segnet_vgg16(num_classes=12)
    assert 29.3e6 < sum(p.numel() for p in model.parameters()) < 29.6e6


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="stages"):
        SegNet(num_classes=2, stages=())
    with pytest.raises(ValueError, match="at least 16"):
        segnet_mini(2)(torch.rand(1, 3, 15, 40))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        segnet_mini(2)(torch.rand(1, 1, 32, 32))
