"""DenseNet: torchvision weight compatibility, parameter counts, channel counts, checkpointing, errors."""

import pytest
import torch
import torchvision

from companion.cnn.densenet import (DenseBlock, DenseNet, densenet121, densenet169, densenet_mini,
                                    input_channels_per_layer)


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def pair121():
    torch.manual_seed(0)
    reference = torchvision.models.densenet121(weights=None).eval()
    ours = densenet121().eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours, reference


def test_densenet121_loads_torchvision_weights_and_gives_equal_logits(pair121):
    ours, reference = pair121
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)


def test_densenet121_parameter_count_and_names(pair121):
    ours, reference = pair121
    assert _count(ours) == _count(reference) == 7_978_856
    assert [name for name, _ in ours.named_parameters()] == \
        [name for name, _ in reference.named_parameters()]
    assert "features.denseblock1.denselayer1.norm1.weight" in ours.state_dict()
    assert "features.transition3.conv.weight" in ours.state_dict()


def test_densenet169_matches_torchvision_names_and_count():
    ours, reference = densenet169(), torchvision.models.densenet169(weights=None)
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert _count(ours) == _count(reference) == 14_149_480


def test_dense_block_grows_by_k_per_layer_and_keeps_its_input():
    block = DenseBlock(num_layers=5, in_channels=7, growth_rate=3).eval()
    x = torch.randn(2, 7, 6, 6)
    out = block(x)
    assert out.shape == (2, 7 + 5 * 3, 6, 6)
    torch.testing.assert_close(out[:, :7], x)  # the block input is passed through unchanged
    for index, layer in enumerate(block.values()):
        assert layer.conv1.in_channels == 7 + index * 3
        assert layer.conv1.out_channels == 4 * 3  # bottleneck 4k
        assert layer.conv2.out_channels == 3


def test_input_channels_per_layer_matches_the_modules(pair121):
    ours, _ = pair121
    per_block = input_channels_per_layer(32, (6, 12, 24, 16), 64)
    assert per_block[0] == [64, 96, 128, 160, 192, 224]
    assert [blk[0] for blk in per_block] == [64, 128, 256, 512]  # after compression 0.5
    for index, expected in enumerate(per_block):
        block = getattr(ours.features, f"denseblock{index + 1}")
        assert [layer.conv1.in_channels for layer in block.values()] == expected
    assert ours.num_features == 1024


@pytest.mark.parametrize("side", [28, 32])
def test_small_input_accepts_fashion_mnist_and_cifar_sizes(side):
    model = DenseNet(growth_rate=4, block_config=(2, 2, 2, 2), num_init_features=8,
                     num_classes=10, in_channels=1, small_input=True)
    assert "pool0" not in dict(model.features.named_children())
    assert model.features.conv0.kernel_size == (3, 3) and model.features.conv0.stride == (1, 1)
    assert model(torch.randn(2, 1, side, side)).shape == (2, 10)


def test_densenet121_small_input_keeps_the_rest_of_the_tree():
    small = densenet121(num_classes=10, in_channels=1, small_input=True)
    big = densenet121(num_classes=10, in_channels=1)
    small_names = {name for name, _ in small.named_parameters()}
    assert small_names == {name for name, _ in big.named_parameters()}
    assert _count(big) - _count(small) == 64 * (49 - 9)  # only conv0's kernel shrinks


def test_mini_forward_backward_every_parameter_gets_a_gradient():
    model = densenet_mini()
    logits = model(torch.randn(4, 1, 28, 28))
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    logits.logsumexp(dim=1).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_channels_last_equals_contiguous():
    model = densenet_mini().eval()
    x = torch.randn(2, 1, 32, 32)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    actual = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_memory_efficient_gives_identical_outputs_and_gradients():
    torch.manual_seed(0)
    plain = DenseNet(growth_rate=4, block_config=(3, 3), num_init_features=8, num_classes=5,
                     in_channels=1, small_input=True)
    efficient = DenseNet(growth_rate=4, block_config=(3, 3), num_init_features=8, num_classes=5,
                         in_channels=1, small_input=True, memory_efficient=True)
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(4, 1, 12, 12)
    out_plain, out_efficient = plain(x), efficient(x)
    torch.testing.assert_close(out_efficient, out_plain, rtol=0, atol=0)
    out_plain.square().sum().backward()
    out_efficient.square().sum().backward()
    for (name, p_plain), p_efficient in zip(plain.named_parameters(), efficient.parameters()):
        torch.testing.assert_close(p_efficient.grad, p_plain.grad, rtol=1e-6, atol=1e-7,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_torchvision_memory_efficient_matches_ours():
    reference = torchvision.models.DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8,
                                            num_classes=3, memory_efficient=True)
    ours = DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8, num_classes=3,
                    memory_efficient=True)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape, match", [
    ((2, 3, 28, 28), "in_channels=3"),
    ((1, 28, 28), r"shape \(B, 1, H, W\)"),
])
def test_bad_channel_count_or_rank(shape, match):
    with pytest.raises(ValueError, match=match):
        densenet_mini()(torch.randn(shape))


def test_imagenet_stem_on_tiny_images_suggests_small_input():
    model = DenseNet(growth_rate=4, block_config=(1, 1, 1, 1), num_init_features=8, num_classes=3)
    with pytest.raises(ValueError, match="small_input=True"):
        model(torch.randn(1, 3, 28, 28))


@pytest.mark.parametrize("kwargs, match", [
    ({"block_config": ()}, "at least one block"),
    ({"growth_rate": 0}, "positive"),
    ({"compression": 0.0}, r"compression=0.0 must be in \(0, 1\]"),
])
def test_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DenseNet(**kwargs)


def test_stride_two_small_stem_halves_the_first_block_and_checks_its_argument():
    model = densenet_mini()
    assert model.features.conv0.stride == (2, 2)
    maps = model.features[:4](torch.randn(1, 1, 28, 28))  # conv0, norm0, relu0, denseblock1
    assert maps.shape[-2:] == (14, 14)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="stem_stride=3"):
        DenseNet(small_input=True, stem_stride=3)
