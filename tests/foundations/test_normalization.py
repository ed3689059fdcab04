"""Our BatchNorm1d/2d and LayerNorm equal PyTorch's: outputs, gradients, running statistics."""

import pytest
import torch
from torch import nn

from companion.foundations.normalization import BatchNorm1d, BatchNorm2d, LayerNorm


def _pair(ours_class, theirs_class, num_features, generator, **options):
    """Our layer and PyTorch's with the same random affine parameters (loaded from PyTorch's)."""
    theirs = theirs_class(num_features, **options)
    if getattr(theirs, "affine", False):
        with torch.no_grad():
            theirs.weight.copy_(1 + 0.5 * torch.randn(num_features, generator=generator))
            theirs.bias.copy_(torch.randn(num_features, generator=generator))
    ours = ours_class(num_features, **options)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


@pytest.mark.parametrize("ours_class, theirs_class, shape", [
    (BatchNorm2d, nn.BatchNorm2d, (8, 3, 5, 4)),
    (BatchNorm2d, nn.BatchNorm2d, (2, 6, 1, 3)),
    (BatchNorm1d, nn.BatchNorm1d, (16, 7)),
    (BatchNorm1d, nn.BatchNorm1d, (4, 5, 9)),
])
@pytest.mark.parametrize("options", [{}, {"momentum": 0.3, "eps": 1e-3}, {"momentum": None},
                                     {"affine": False}, {"track_running_stats": False}])
def test_batch_norm_equals_torch_over_several_steps(ours_class, theirs_class, shape, options):
    generator = torch.Generator().manual_seed(0)
    ours, theirs = _pair(ours_class, theirs_class, shape[1], generator, **options)
    for step in range(4):
        x = 3 * torch.randn(shape, generator=generator) + 2
        x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
        y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
        torch.testing.assert_close(y_ours, y_theirs, rtol=1e-5, atol=1e-5)
        upstream = torch.randn(shape, generator=generator)
        (y_ours * upstream).sum().backward()
        (y_theirs * upstream).sum().backward()
        torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-4, atol=1e-5)
    if options.get("affine", True):
        torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours.bias.grad, theirs.bias.grad, rtol=1e-4, atol=1e-5)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for name, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, rtol=1e-6, atol=1e-6)
    ours.eval()
    theirs.eval()
    x = 3 * torch.randn(shape, generator=generator) + 2
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_running_statistics_follow_the_momentum_rule():
    layer = BatchNorm2d(2, momentum=0.25)
    x = torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    layer(x)
    batch_mean = x.mean(dim=(0, 2, 3))
    unbiased_var = x.var(dim=(0, 2, 3), unbiased=True)
    torch.testing.assert_close(layer.running_mean, 0.75 * 0 + 0.25 * batch_mean)
    torch.testing.assert_close(layer.running_var, 0.75 * 1 + 0.25 * unbiased_var)
    assert layer.num_batches_tracked.item() == 1 and layer.num_batches_tracked.dtype == torch.long


def test_training_output_is_standardised_per_channel_and_eval_output_does_not_depend_on_the_batch():
    layer = BatchNorm2d(3)
    x = 5 * torch.randn(6, 3, 4, 4) - 1
    y = layer(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(y.var(dim=(0, 2, 3), unbiased=False), torch.ones(3), rtol=0, atol=1e-3)
    layer.eval()
    torch.testing.assert_close(layer(x)[:2], layer(x[:2]))


def test_torch_state_dict_loads_into_ours_and_back():
    theirs = nn.BatchNorm2d(4)
    theirs(torch.randn(5, 4, 3, 3))
    ours = BatchNorm2d(4)
    ours.load_state_dict(theirs.state_dict())
    assert ours.num_batches_tracked.item() == 1
    back = nn.BatchNorm2d(4)
    back.load_state_dict(ours.state_dict())
    torch.testing.assert_close(back.running_var, theirs.running_var)


@pytest.mark.parametrize("normalized_shape, shape", [(6, (4, 6)), (8, (2, 5, 8)), ((3, 4, 4), (2, 3, 4, 4)),
                                                      ((4, 4), (2, 3, 4, 4))])
@pytest.mark.parametrize("options", [{}, {"elementwise_affine": False}, {"bias": False}, {"eps": 1e-2}])
def test_layer_norm_equals_torch(normalized_shape, shape, options):
    generator = torch.Generator().manual_seed(0)
    theirs = nn.LayerNorm(normalized_shape, **options)
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    ours = LayerNorm(normalized_shape, **options)
    ours.load_state_dict(theirs.state_dict())
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = 4 * torch.randn(shape, generator=generator) + 3
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-5, atol=1e-5)
    upstream = torch.randn(shape, generator=generator)
    (y_ours * upstream).sum().backward()
    (y_theirs * upstream).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-4, atol=1e-5)
    for ours_param, theirs_param in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(ours_param.grad, theirs_param.grad, rtol=1e-4, atol=1e-5)


def test_layer_norm_is_the_same_in_training_and_evaluation_and_per_example():
    layer = LayerNorm(10)
    x = torch.randn(4, 10)
    train_output = layer(x)
    layer.eval()
    torch.testing.assert_close(layer(x), train_output)
    torch.testing.assert_close(layer(x[1:2]), train_output[1:2])


def test_float64_and_device_of_the_input_are_kept():
    layer = BatchNorm2d(2).double()
    y = layer(torch.randn(3, 2, 2, 2, dtype=torch.float64))
    assert y.dtype == torch.float64 and layer.running_mean.dtype == torch.float64


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="4-D"):
        BatchNorm2d(3)(torch.randn(2, 3))
    with pytest.raises(ValueError, match="num_features=3"):
        BatchNorm2d(3)(torch.randn(2, 4, 2, 2))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm1d(3)(torch.randn(1, 3))
    with pytest.raises(ValueError, match="positive"):
        BatchNorm1d(0)
    with pytest.raises(ValueError, match="does not end with"):
        LayerNorm(5)(torch.randn(2, 4))
