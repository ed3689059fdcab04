"""VGG: torchvision equality (with and without batch norm), parameter counts, shapes, errors."""

import pytest
import torch
import torchvision
from torch import nn

from companion.cnn.vgg import CONFIGS, VGG, vgg, vgg11, vgg16, vgg19, vgg_mini


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def vgg16_pair():
    torch.manual_seed(0)
    return vgg16().eval(), torchvision.models.vgg16(weights=None).eval()


def test_vgg16_strict_load_and_equal_logits(vgg16_pair):
    ours, reference = vgg16_pair
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)
    assert _count(ours) == _count(reference) == 138_357_544


@pytest.mark.parametrize("builder, name, expected", [(vgg11, "vgg11", 132_863_336),
                                                     (vgg19, "vgg19", 143_667_240)])
def test_vgg11_vgg19_load_and_count(builder, name, expected):
    with torch.device("meta"):  # shapes and names only: no memory, no initialisation time
        ours, reference = builder(), getattr(torchvision.models, name)(weights=None)
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    assert _count(ours) == _count(reference) == expected


@pytest.mark.parametrize("config, name", [("A", "vgg11_bn"), ("D", "vgg16_bn"), ("E", "vgg19_bn")])
def test_batch_norm_variants_load_strictly(config, name):
    with torch.device("meta"):
        ours, reference = vgg(config, batch_norm=True), getattr(torchvision.models, name)(weights=None)
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    assert _count(ours) == _count(reference)


def test_batch_norm_features_equal_torchvision():
    torch.manual_seed(0)
    reference = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["A"], batch_norm=True)
    reference[1].running_mean.uniform_(-0.5, 0.5)  # non-trivial statistics
    ours = VGG(CONFIGS["A"], batch_norm=True, hidden_features=8).features  # small classifier: fast
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x), rtol=1e-5, atol=1e-5)


def test_paper_configuration_counts_in_millions():
    # Table 2 of the paper: A, A-LRN 133; B 133; C 134; D 138; E 144 million
    with torch.device("meta"):
        millions = {name: round(_count(VGG(layers)) / 1e6) for name, layers in CONFIGS.items()}
    assert millions == {"A": 133, "A-LRN": 133, "B": 133, "C": 134, "D": 138, "E": 144}


def test_all_convolutions_are_3x3_or_1x1_and_pools_2x2():
    with torch.device("meta"):
        model = vgg("C")
    kernels = {m.kernel_size for m in model.features if isinstance(m, nn.Conv2d)}
    assert kernels == {(3, 3), (1, 1)}
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 5 and all(p.kernel_size == 2 and p.stride == 2 for p in pools)


@pytest.mark.parametrize("side", [28, 32])
def test_small_input_shapes(side):
    model = vgg11(num_classes=10, in_channels=1, small_input=True)
    assert model.features(torch.randn(2, 1, side, side)).shape == (2, 512, 1, 1)
    assert model(torch.randn(2, 1, side, side)).shape == (2, 10)


def test_mini_forward_backward_and_channels_last():
    torch.manual_seed(0)
    model = vgg_mini()
    model(torch.randn(4, 1, 28, 28)).logsumexp(dim=1).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    model.eval()
    x = torch.randn(2, 1, 32, 32)
    expected = model(x)
    actual = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_bad_inputs_and_arguments():
    model = vgg_mini()
    with pytest.raises(ValueError, match="in_channels"):
        model(torch.randn(1, 3, 28, 28))
    with pytest.raises(ValueError, match="small_input=True"):
        VGG(CONFIGS["A"], hidden_features=8, in_channels=1)(torch.randn(1, 1, 28, 28))
    with pytest.raises(ValueError, match="valid ones are A, A-LRN, B, C, D, E"):
        vgg("F")
    with pytest.raises(ValueError, match="unknown VGG layer"):
        VGG((64, "P"))
