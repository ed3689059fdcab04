"""LeNet-5: shapes, hand-computed parameter counts, gradients, channels_last, the C3 table, errors."""

import pytest
import torch
from torch import nn

from companion.cnn.lenet import (C3_CONNECTIONS, LeNet5, PartiallyConnectedConv2d, ScaledTanh,
                                 c3_connection_mask, lenet5)


def _conv(c_in, c_out, k, bias=True):
    return c_out * c_in * k * k + (c_out if bias else 0)


def _linear(n_in, n_out, bias=True):
    return n_out * n_in + (n_out if bias else 0)


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("variant", ["classic", "bn"])
@pytest.mark.parametrize("num_classes, in_channels", [(10, 1), (7, 3)])
def test_output_shape_and_finite(variant, num_classes, in_channels):
    model = lenet5(num_classes=num_classes, variant=variant, in_channels=in_channels)
    x = torch.randn(4, in_channels, 32, 32)
    logits = model(x)
    assert logits.shape == (4, num_classes)
    assert torch.isfinite(logits).all()


def test_intermediate_shapes_follow_the_paper():
    model = lenet5(variant="classic")
    x = torch.randn(2, 1, 32, 32)
    expected = {"c1": (6, 28, 28), "s2": (6, 14, 14), "c3": (16, 10, 10), "s4": (16, 5, 5),
                "c5": (120, 1, 1)}
    for name, layer in model.features.named_children():
        x = layer(x)
        if name in expected:
            assert tuple(x.shape[1:]) == expected[name], name


def test_classic_parameter_count_by_hand():
    expected = (_conv(1, 6, 5) + _conv(6, 16, 5) + _conv(16, 120, 5)
                + _linear(120, 84) + _linear(84, 10))
    assert expected == 61_706
    assert _count(lenet5(variant="classic")) == expected


def test_bn_parameter_count_by_hand():
    batch_norm = 2 * (6 + 16 + 120 + 84)  # a scale and a shift per channel
    expected = (_conv(1, 6, 5, False) + _conv(6, 16, 5, False) + _conv(16, 120, 5, False)
                + _linear(120, 84, False) + _linear(84, 10) + batch_norm)
    assert _count(lenet5(variant="bn")) == expected


@pytest.mark.parametrize("variant", ["classic", "bn"])
def test_every_parameter_gets_a_gradient(variant):
    model = lenet5(variant=variant)
    model(torch.randn(8, 1, 32, 32)).logsumexp(dim=1).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("variant", ["classic", "bn"])
def test_channels_last_equals_contiguous(variant):
    model = lenet5(variant=variant).eval()
    x = torch.randn(4, 1, 32, 32)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    actual = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_scaled_tanh_maps_one_to_one():
    values = ScaledTanh()(torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(values, torch.tensor([-1.0, 0.0, 1.0]), atol=1e-4, rtol=0)


def test_c3_table_has_the_papers_1516_parameters():
    mask = c3_connection_mask()
    assert mask.sum() == 60 == sum(len(maps) for maps in C3_CONNECTIONS)
    assert [len(set(maps)) for maps in C3_CONNECTIONS] == [3] * 6 + [4] * 9 + [6]
    model = LeNet5(partial_c3=True)
    assert model.features.c3.effective_parameters() == 1516


def test_partial_c3_equals_conv2d_with_zeroed_weights_and_masks_gradients():
    layer = PartiallyConnectedConv2d(6, 16, 5, c3_connection_mask())
    reference = nn.Conv2d(6, 16, 5)
    with torch.no_grad():
        reference.weight.copy_(layer.weight * layer.mask)
        reference.bias.copy_(layer.bias)
    x = torch.randn(2, 6, 14, 14)
    torch.testing.assert_close(layer(x), reference(x), rtol=1e-5, atol=1e-5)
    layer(x).sum().backward()
    unconnected = (layer.mask == 0).expand_as(layer.weight)
    assert (layer.weight.grad[unconnected] == 0).all()
    # changing an unconnected weight leaves the output unchanged
    before = layer(x)
    with torch.no_grad():
        layer.weight[0, 5] += 10.0  # C3 map 0 does not read S2 map 5
    torch.testing.assert_close(layer(x), before)


def test_bad_variant_lists_valid_ones():
    with pytest.raises(ValueError, match="classic, bn"):
        lenet5(variant="modern")


@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (2, 3, 32, 32), (1, 32, 32)])
def test_bad_input_shape_says_how_to_fix(shape):
    model = lenet5()
    with pytest.raises(ValueError, match="pad 28x28 images by 2"):
        model(torch.randn(shape))


def test_bad_mask_shape():
    with pytest.raises(ValueError, match="mask has shape"):
        PartiallyConnectedConv2d(6, 16, 5, torch.ones(16, 6))
