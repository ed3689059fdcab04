"""ResNet and ResNeXt: torchvision weight compatibility, parameter counts, shortcuts, small inputs, errors."""

import pytest
import torch
import torchvision
from torch import nn

from companion.cnn import resnet as resnet_module
from companion.cnn.resnet import (BasicBlock, Bottleneck, ResNet, ZeroPadShortcut, conv3x3, plain_mini,
                                  resnet18, resnet_mini)

# name -> parameters at the ImageNet configuration (torchvision's counts; the paper does not list them)
IMAGENET_PARAMETERS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def model_pairs():
    """(ours, torchvision's) for every ImageNet builder, ours loaded with torchvision's weights."""
    torch.manual_seed(0)
    pairs = {}
    for name in IMAGENET_PARAMETERS:
        reference = getattr(torchvision.models, name)(weights=None).eval()
        ours = getattr(resnet_module, name)().eval()
        ours.load_state_dict(reference.state_dict(), strict=True)
        pairs[name] = (ours, reference)
    return pairs


@pytest.mark.parametrize("name", list(IMAGENET_PARAMETERS))
def test_parameter_counts_equal_torchvision(model_pairs, name):
    ours, reference = model_pairs[name]
    assert _count(ours) == _count(reference) == IMAGENET_PARAMETERS[name]


@pytest.mark.parametrize("name", list(IMAGENET_PARAMETERS))
def test_same_state_dict_names_and_eval_logits(model_pairs, name):
    ours, reference = model_pairs[name]
    assert list(ours.state_dict()) == list(reference.state_dict())
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))  # small: fast
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)


def test_torchvision_loads_our_weights_too():
    ours = resnet18()
    reference = torchvision.models.resnet18(weights=None)
    reference.load_state_dict(ours.state_dict(), strict=True)


def test_initialisation_follows_torchvision():
    model = resnet18()
    conv = model.layer2[0].conv1  # fan_out = 128 * 3 * 3
    std = conv.weight.std().item()
    assert abs(std - (2.0 / (128 * 9)) ** 0.5) < 0.1 * std
    assert (model.layer1[0].bn2.weight == 1).all() and (model.layer1[0].bn2.bias == 0).all()


def test_zero_init_residual_makes_blocks_start_as_identity():
    model = resnet_module.resnet50(zero_init_residual=True)
    assert all((block.bn3.weight == 0).all() for block in model.modules() if isinstance(block, Bottleneck))
    block = resnet18(zero_init_residual=True).layer1[0].eval()
    x = torch.rand(2, 64, 8, 8)  # non-negative, like the output of the ReLU before it
    torch.testing.assert_close(block(x), x)


def test_small_input_stem_of_the_bottleneck_models():
    for builder in (resnet_module.resnet50, resnet_module.resnext50_32x4d):
        with torch.device("meta"):
            model = builder(num_classes=10, in_channels=1, small_input=True)
        assert isinstance(model.maxpool, nn.Identity)
        assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
        assert model.conv1.in_channels == 1 and model.fc.out_features == 10


@pytest.mark.parametrize("builder", [resnet18, resnet_mini])
def test_small_input_accepts_fashion_mnist_shapes(builder):
    model = (builder(num_classes=10, in_channels=1, small_input=True) if builder is resnet18
             else builder()).eval()
    assert isinstance(model.maxpool, nn.Identity) and model.conv1.kernel_size == (3, 3)
    with torch.no_grad():
        for side in (28, 32):
            out = model(torch.randn(1, 1, side, side))
            assert out.shape == (1, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("builder", [resnet_mini, plain_mini])
def test_minis_forward_backward_every_parameter_gets_a_gradient(builder):
    torch.manual_seed(0)
    model = builder()
    logits = model(torch.randn(4, 1, 28, 28))
    assert logits.shape == (4, 10)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_channels_last_equals_contiguous():
    model = resnet_mini().eval()
    x = torch.randn(2, 1, 28, 28)
    expected = model(x)
    actual = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_plain_twin_has_the_same_layers_without_shortcuts():
    plain, residual = plain_mini(), plain_mini(residual=True)
    plain_convs = [m for m in plain.modules() if isinstance(m, nn.Conv2d)]
    assert len(plain_convs) + 1 == 34  # 33 convolutions + the classifier
    assert all(block.downsample is None for block in plain.modules() if isinstance(block, BasicBlock))
    # the residual twin adds exactly the three projection shortcuts (conv + batch norm)
    extra = _count(residual) - _count(plain)
    assert extra == sum(c_in * c_out + 2 * c_out for c_in, c_out in [(8, 16), (16, 32), (32, 64)])


def test_basic_block_output_is_relu_of_residual_plus_input():
    block = BasicBlock(8, 8).eval()
    x = torch.rand(2, 8, 6, 6)
    residual = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
    torch.testing.assert_close(block(x), torch.relu(residual + x))
    plain = BasicBlock(8, 8, residual=False).eval()
    plain.load_state_dict(block.state_dict())
    torch.testing.assert_close(plain(x), torch.relu(residual))


def test_shortcut_options():
    x = torch.randn(2, 16, 8, 8)
    option_a = BasicBlock(16, 32, stride=2, shortcut="A")
    assert isinstance(option_a.downsample, ZeroPadShortcut)
    assert BasicBlock(16, 16, shortcut="A").downsample is None
    assert BasicBlock(16, 16, shortcut="B").downsample is None
    assert isinstance(BasicBlock(16, 16, shortcut="C").downsample, nn.Sequential)
    assert option_a(x).shape == (2, 32, 4, 4)
    padded = option_a.downsample(x)
    torch.testing.assert_close(padded[:, :16], x[:, :, ::2, ::2])
    assert (padded[:, 16:] == 0).all()
    assert _count(ResNet(BasicBlock, (1, 1, 1, 1), (8, 16, 32, 64), shortcut="A")) < \
        _count(ResNet(BasicBlock, (1, 1, 1, 1), (8, 16, 32, 64), shortcut="B")) < \
        _count(ResNet(BasicBlock, (1, 1, 1, 1), (8, 16, 32, 64), shortcut="C"))


def test_grouped_convolution_saves_parameters():
    dense, grouped = conv3x3(128, 128), conv3x3(128, 128, groups=32)
    assert _count(grouped) * 32 == _count(dense)
    block = Bottleneck(256, 64, groups=32, width_per_group=4)
    assert block.conv2.groups == 32 and block.conv2.in_channels == 128 and block.conv3.out_channels == 256


def test_bad_input_channels_and_rank():
    model = resnet_mini()
    with pytest.raises(ValueError, match="in_channels=3"):
        model(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.randn(1, 28, 28))


def test_bad_configurations():
    with pytest.raises(ValueError, match="valid options are A, B, C"):
        ResNet(BasicBlock, (1, 1, 1, 1), shortcut="D")
    with pytest.raises(ValueError, match="four stages"):
        ResNet(BasicBlock, (2, 2, 2))
    with pytest.raises(ValueError, match="use Bottleneck"):
        BasicBlock(64, 64, groups=32)
    with pytest.raises(ValueError, match="cannot reduce"):
        ZeroPadShortcut(32, 16, 2)
