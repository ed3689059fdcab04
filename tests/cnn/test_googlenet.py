"""GoogLeNet: torchvision weight compatibility, parameter counts, small-input stem, mini, errors."""

import warnings

import pytest
import torch
import torchvision
from torch import nn

from companion.cnn.googlenet import (GoogLeNet, GoogLeNetOutputs, Inception, InceptionMini,
                                     googlenet, inception_mini)


def _count(model):
    return sum(p.numel() for p in model.parameters())


def _torchvision_googlenet(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchvision.models.googlenet(weights=None, init_weights=False, **kwargs)


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    reference = _torchvision_googlenet(aux_logits=True).eval()
    ours = googlenet().eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours, reference


def test_strict_load_and_equal_eval_logits(pair):
    ours, reference = pair
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)


def test_training_mode_returns_main_and_both_auxiliary_logits(pair):
    ours, reference = pair
    ours.train()
    reference.train()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    actual = ours(x)
    torch.manual_seed(0)
    expected = reference(x)
    ours.eval()
    reference.eval()
    assert isinstance(actual, GoogLeNetOutputs)
    for a, e in zip(actual, expected):  # same dropout masks: same seed, same order of draws
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4)


def test_transform_input_matches_torchvision():
    torch.manual_seed(0)
    reference = _torchvision_googlenet(aux_logits=False, transform_input=True).eval()
    ours = googlenet(aux_logits=False, transform_input=True).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)


def test_parameter_counts_equal_torchvision(pair):
    assert _count(pair[0]) == _count(pair[1]) == 13_004_888
    assert _count(googlenet(aux_logits=False)) == 6_624_904


def test_paper_five_by_five_branch_weights_by_hand():
    module = Inception(192, 64, 96, 128, 16, 32, 32, five_by_five_kernel=5)  # inception (3a)
    weights = sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))
    by_hand = 192 * 64 + 192 * 96 + 96 * 128 * 9 + 192 * 16 + 16 * 32 * 25 + 192 * 32
    assert weights == by_hand == 163_328
    assert module.branch3[1].conv.kernel_size == (5, 5)
    assert module(torch.randn(1, 192, 7, 7)).shape == (1, 256, 7, 7)


@pytest.mark.parametrize("side, grids", [(28, (14, 7, 4)), (32, (16, 8, 4))])
def test_small_input_stem_on_fashion_mnist_sizes(side, grids):
    model = googlenet(num_classes=10, in_channels=1, small_input=True, aux_logits=False).eval()
    seen = {}
    for name in ("inception3a", "inception4a", "inception5a"):
        getattr(model, name).register_forward_hook(
            lambda module, inputs, output, name=name: seen.update({name: output.shape[-1]}))
    with torch.no_grad():
        assert model(torch.randn(1, 1, side, side)).shape == (1, 10)
    assert tuple(seen.values()) == grids


def test_small_input_training_with_auxiliary_classifiers():
    model = googlenet(num_classes=10, in_channels=1, small_input=True)
    outputs = model(torch.randn(2, 1, 28, 28))
    assert [tuple(o.shape) for o in outputs] == [(2, 10)] * 3


def test_mini_forward_backward_every_parameter_gets_a_gradient():
    model = inception_mini()
    assert isinstance(model, InceptionMini)
    model(torch.randn(4, 1, 28, 28)).logsumexp(dim=1).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_mini_channels_last_equals_contiguous():
    model = inception_mini().eval()
    x = torch.randn(2, 1, 28, 28)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    actual = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_inception_module_concatenates_its_branches():
    module = Inception(16, 4, 4, 8, 2, 3, 5).eval()
    x = torch.randn(1, 16, 9, 9)
    out = module(x)
    assert out.shape == (1, 4 + 8 + 3 + 5, 9, 9) and module.out_channels == 20
    torch.testing.assert_close(out[:, :4], module.branch1(x))
    torch.testing.assert_close(out[:, -5:], module.branch4(x))


def test_bad_inputs_raise_clear_errors():
    model = googlenet(num_classes=10, in_channels=1, small_input=True, aux_logits=False)
    with pytest.raises(ValueError, match="in_channels=3"):
        model(torch.randn(1, 3, 28, 28))
    with pytest.raises(ValueError, match="at least 32x32.*small_input=True"):
        GoogLeNet(aux_logits=False)(torch.randn(1, 3, 28, 28))
    with pytest.raises(ValueError, match="transform_input"):
        googlenet(in_channels=1, transform_input=True)
    with pytest.raises(ValueError, match="five_by_five_kernel"):
        Inception(8, 1, 1, 1, 1, 1, 1, five_by_five_kernel=7)
    with pytest.raises(ValueError, match="in_channels"):
        inception_mini()(torch.randn(1, 3, 28, 28))
