"""Inception v3: torchvision weight compatibility, parameter counts, minimum sizes, small-input stem."""

import warnings

import pytest
import torch
import torchvision

from companion.cnn.inception_v3 import InceptionOutputs, inception_v3


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = torchvision.models.inception_v3(weights=None, init_weights=False).eval()
    ours = inception_v3().eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours, reference


def test_strict_load_and_equal_eval_logits(pair):
    ours, reference = pair
    x = torch.randn(2, 3, 75, 75, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x)
        # torchvision's init without trained BN statistics gives huge logits: compare relatively
        torch.testing.assert_close(ours(x) / expected.abs().max(), expected / expected.abs().max(),
                                   rtol=1e-5, atol=1e-6)


def test_auxiliary_head_matches_torchvision_in_training_mode(pair):
    ours, reference = pair
    ours.AuxLogits.train()
    reference.AuxLogits.train()
    x = torch.randn(2, 768, 17, 17, generator=torch.Generator().manual_seed(1))  # Mixed_6e output
    torch.testing.assert_close(ours.AuxLogits(x), reference.AuxLogits(x), rtol=1e-4, atol=1e-4)
    ours.eval()
    reference.eval()


def test_parameter_counts_equal_torchvision(pair):
    assert _count(pair[0]) == _count(pair[1]) == 27_161_264
    without_aux = _count(pair[0]) - _count(pair[0].AuxLogits)
    assert without_aux == 23_834_568  # the paper: "less than 25 million parameters"


def test_factorised_convolutions_in_the_17x17_module(pair):
    module = pair[0].Mixed_6b
    assert module.branch7x7_2.conv.kernel_size == (1, 7)
    assert module.branch7x7_3.conv.kernel_size == (7, 1)
    assert module(torch.randn(1, 768, 5, 5)).shape == (1, 768, 5, 5)


@pytest.fixture(scope="module")
def small():
    return inception_v3(num_classes=10, in_channels=1, small_input=True)


@pytest.mark.parametrize("side, grids", [(28, (13, 6, 2)), (32, (15, 7, 3))])
def test_small_input_stem_on_fashion_mnist_sizes(small, side, grids):
    model = small.eval()
    seen = {}
    for name in ("Mixed_5b", "Mixed_6b", "Mixed_7b"):
        getattr(model, name).register_forward_hook(
            lambda module, inputs, output, name=name: seen.update({name: output.shape[-1]}))
    with torch.no_grad():
        assert model(torch.randn(1, 1, side, side)).shape == (1, 10)
    assert tuple(seen.values()) == grids
    for module in (model.Mixed_5b, model.Mixed_6b, model.Mixed_7b):
        module._forward_hooks.clear()


def test_small_input_training_returns_auxiliary_logits(small):
    outputs = small.train()(torch.randn(2, 1, 28, 28))
    small.eval()
    assert isinstance(outputs, InceptionOutputs)
    assert [tuple(o.shape) for o in outputs] == [(2, 10), (2, 10)]


def test_minimum_input_sizes(pair, small):
    ours = pair[0]
    with torch.no_grad():
        assert ours(torch.randn(1, 3, 75, 75)).shape == (1, 1000)
    with pytest.raises(ValueError, match="at least 75x75.*small_input=True"):
        ours(torch.randn(1, 3, 74, 74))
    ours.train()
    with pytest.raises(ValueError, match="299x299 in training mode.*aux_logits=False"):
        ours(torch.randn(2, 3, 298, 298))
    ours.eval()
    with pytest.raises(ValueError, match="at least 15x15"):
        small(torch.randn(1, 1, 14, 14))


def test_bad_channels_and_transform_input(small):
    with pytest.raises(ValueError, match="in_channels=3"):
        small(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="transform_input"):
        inception_v3(in_channels=1, transform_input=True)
