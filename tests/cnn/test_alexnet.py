"""AlexNet and local response normalisation: torchvision equality, parameter counts, shapes, errors."""

import pytest
import torch
import torchvision
from torch import nn

from companion.cnn.alexnet import AlexNet, alexnet, alexnet_mini
from companion.cnn.lrn import LocalResponseNorm, local_response_norm, to_torch_arguments


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    return alexnet().eval(), torchvision.models.alexnet(weights=None).eval()


def test_strict_load_from_torchvision_and_equal_logits(pair):
    ours, reference = pair
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)


def test_parameter_counts(pair):
    ours, reference = pair
    assert _count(ours) == _count(reference) == 61_100_840
    # the 2012 paper's layout with its two-GPU grouped convolutions: the "60 million parameters"
    with torch.device("meta"):
        assert _count(alexnet(layout="2012")) == 60_965_224


def test_2012_layout_has_lrn_and_groups():
    model = alexnet(layout="2012")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert sum(isinstance(m, LocalResponseNorm) for m in model.features) == 2
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.parametrize("layout", ["2014", "2012"])
def test_small_input_shapes(layout):
    model = alexnet(num_classes=10, in_channels=1, small_input=True, layout=layout)
    for side, grid in [(28, 6), (32, 7)]:
        x = torch.randn(2, 1, side, side)
        assert model.features(x).shape[-2:] == (grid, grid)  # averaged to 6x6 before FC6
        assert model(x).shape == (2, 10)


def test_mini_forward_backward():
    torch.manual_seed(0)
    model = alexnet_mini()
    logits = model(torch.randn(4, 1, 28, 28))
    assert logits.shape == (4, 10)
    logits.logsumexp(dim=1).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert isinstance(alexnet_mini(activation=nn.Tanh).features[1], nn.Tanh)


def test_channels_last_equals_contiguous():
    torch.manual_seed(0)
    model = alexnet_mini().eval()
    x = torch.randn(2, 1, 32, 32)
    expected = model(x)
    actual = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [1, 3, 5, 7])
def test_lrn_equals_torch_with_alpha_times_n(size):
    x = 3 * torch.randn(2, 12, 5, 5, generator=torch.Generator().manual_seed(size))
    reference = nn.LocalResponseNorm(**to_torch_arguments(size, alpha=1e-2, beta=0.75, k=2.0))
    torch.testing.assert_close(local_response_norm(x, size, alpha=1e-2, beta=0.75, k=2.0), reference(x),
                               rtol=1e-5, atol=1e-6)
    assert to_torch_arguments(size, alpha=1e-4)["alpha"] == pytest.approx(size * 1e-4)


def test_lrn_by_hand_on_one_position():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1, 1)
    out = local_response_norm(a, size=3, alpha=0.1, beta=1.0, k=1.0).flatten()
    # channel 0 sums channels 0..1, channel 1 sums 0..2, channel 3 sums 2..3
    expected = torch.tensor([1 / (1 + 0.1 * 5), 2 / (1 + 0.1 * 14), 3 / (1 + 0.1 * 29), 4 / (1 + 0.1 * 25)])
    torch.testing.assert_close(out, expected)


def test_lrn_is_identity_like_when_alpha_is_zero():
    x = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(LocalResponseNorm(alpha=0.0, k=1.0)(x), x)


def test_lrn_rejects_even_size_and_flat_input():
    with pytest.raises(ValueError, match="odd"):
        LocalResponseNorm(size=4)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        local_response_norm(torch.randn(6))


def test_bad_inputs_and_arguments():
    model = alexnet_mini()
    with pytest.raises(ValueError, match="in_channels=3"):
        model(torch.randn(1, 3, 28, 28))
    with pytest.raises(ValueError, match="pad or resize"):
        model(torch.randn(1, 1, 5, 5))
    with pytest.raises(ValueError, match="small_input=True"):
        AlexNet(widths=(8, 8, 8, 8, 8), hidden_features=8)(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="2014, 2012"):
        alexnet(layout="1999")
    with pytest.raises(ValueError, match="five convolutions"):
        AlexNet(widths=(8, 8, 8))
    with pytest.raises(ValueError, match="divisible by groups"):
        AlexNet(widths=(9, 8, 8, 8, 8), groups=(1, 2, 1, 2, 2))
