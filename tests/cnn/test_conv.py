"""Tests for companion/cnn/conv.py: loops and im2col equal F.conv2d; sizes; receptive fields."""

import pytest
import torch
import torch.nn.functional as F

from companion.cnn.conv import (ReceptiveField, conv2d_im2col, conv2d_loops, conv_output_size,
                                receptive_field)

IMPLEMENTATIONS = [conv2d_loops, conv2d_im2col]

# (in_channels, out_channels, kernel, stride, padding, dilation, groups, size)
CASES = [
    (3, 4, (3, 3), 1, 0, 1, 1, (7, 7)),
    (3, 4, (3, 3), 1, 1, 1, 1, (6, 5)),
    (2, 3, (3, 2), (2, 1), (1, 0), 1, 1, (8, 7)),       # non-square kernel and stride
    (2, 2, (3, 3), 2, 2, 2, 1, (9, 9)),                 # dilation
    (4, 6, (3, 3), 1, 1, (1, 2), 2, (6, 7)),            # groups, non-square dilation
    (4, 4, (3, 3), 1, 1, 1, 4, (6, 6)),                 # depthwise
    (4, 8, (1, 1), 1, 0, 1, 1, (5, 5)),                 # 1x1
    (3, 2, (5, 5), 3, 2, 1, 1, (5, 5)),                 # kernel as large as the padded input allows
]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("use_bias", [True, False])
def test_equals_torch_conv2d(implementation, case, use_bias):
    in_channels, out_channels, kernel, stride, padding, dilation, groups, size = case
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, in_channels, *size, generator=generator, dtype=torch.float64)
    weight = torch.randn(out_channels, in_channels // groups, *kernel, generator=generator,
                         dtype=torch.float64)
    bias = torch.randn(out_channels, generator=generator, dtype=torch.float64) if use_bias else None
    expected = F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                        groups=groups)
    actual = implementation(x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                            groups=groups)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=1e-10, rtol=0)


def test_im2col_gradients_match_torch():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 6, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 2, 3, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    ours = torch.autograd.grad(conv2d_im2col(x, weight, padding=1, groups=2).square().sum(), (x, weight))
    theirs = torch.autograd.grad(F.conv2d(x, weight, padding=1, groups=2).square().sum(), (x, weight))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_is_cross_correlation_not_flipped_convolution():
    x = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    x[0, 0, 1, 1] = 1.0  # a single bright pixel
    weight = torch.arange(9, dtype=torch.float64).reshape(1, 1, 3, 3)
    out = conv2d_im2col(x, weight, padding=1)
    # the response to an impulse is the kernel rotated by 180 degrees (a true convolution gives it unflipped)
    torch.testing.assert_close(out[0, 0], weight[0, 0].flip(0, 1))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS, ids=lambda f: f.__name__)
def test_bad_inputs_raise_clear_errors(implementation):
    x = torch.randn(1, 3, 5, 5)
    with pytest.raises(ValueError, match="divisible by groups"):
        implementation(x, torch.randn(4, 1, 3, 3), groups=2)
    with pytest.raises(ValueError, match=r"weight.shape\[1\]"):
        implementation(x, torch.randn(4, 2, 3, 3))
    with pytest.raises(ValueError, match="output channels"):
        implementation(torch.randn(1, 4, 5, 5), torch.randn(3, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match="larger than the padded input"):
        implementation(x, torch.randn(4, 3, 7, 7))
    with pytest.raises(ValueError, match="4-D"):
        implementation(x[0], torch.randn(4, 3, 3, 3))
    with pytest.raises(ValueError, match="bias"):
        implementation(x, torch.randn(4, 3, 3, 3), torch.randn(3))
    with pytest.raises(ValueError, match="stride"):
        implementation(x, torch.randn(4, 3, 3, 3), stride=0)


@pytest.mark.parametrize("size, kernel, stride, padding, dilation, expected", [
    (28, 5, 1, 0, 1, 24),   # LeNet-style 5x5 "valid" convolution
    (28, 3, 1, 1, 1, 28),   # "same" 3x3
    (224, 11, 4, 2, 1, 55),  # AlexNet's first layer in torchvision
    (7, 3, 2, 0, 1, 3),
    (8, 3, 2, 1, 1, 4),     # floor division
    (9, 3, 1, 0, 2, 5),     # dilation 2: effective kernel 5
])
def test_conv_output_size_known_cases(size, kernel, stride, padding, dilation, expected):
    assert conv_output_size(size, kernel, stride, padding, dilation) == expected
    x = torch.zeros(1, 1, size, size)
    out = F.conv2d(x, torch.zeros(1, 1, kernel, kernel), stride=stride, padding=padding, dilation=dilation)
    assert out.shape[-1] == expected


def test_conv_output_size_rejects_too_large_kernel():
    with pytest.raises(ValueError, match="more padding"):
        conv_output_size(4, 7)


def test_receptive_field_known_cases():
    assert receptive_field([]) == ReceptiveField(1, 1)
    assert receptive_field([(3, 1)] * 2) == ReceptiveField(5, 1)   # two 3x3 see as far as one 5x5
    assert receptive_field([(3, 1)] * 3) == ReceptiveField(7, 1)
    assert receptive_field([(11, 4)]) == ReceptiveField(11, 4)
    # LeNet-5: conv 5, pool 2/2, conv 5, pool 2/2
    assert receptive_field([(5, 1), (2, 2), (5, 1), (2, 2)]) == ReceptiveField(16, 4)
    # dilations 1, 2, 4 of 3x3 kernels grow the field exponentially
    assert receptive_field([(3, 1, 1), (3, 1, 2), (3, 1, 4)]) == ReceptiveField(15, 1)


def test_receptive_field_matches_gradient_support():
    layers = [(3, 1, 1), (3, 2, 1), (3, 1, 2), (2, 2, 1)]
    x = torch.zeros(1, 1, 64, 64, dtype=torch.float64, requires_grad=True)
    h = x
    for kernel, stride, dilation in layers:
        h = F.conv2d(h, torch.ones(1, 1, kernel, kernel, dtype=torch.float64), stride=stride,
                     dilation=dilation)
    centre = h.shape[-1] // 2
    (grad,) = torch.autograd.grad(h[0, 0, centre, centre], x)
    rows = grad[0, 0].abs().sum(dim=1).nonzero().flatten()  # input rows the unit depends on
    assert int(rows[-1] - rows[0] + 1) == receptive_field(layers).size


def test_receptive_field_rejects_bad_layers():
    with pytest.raises(ValueError, match="kernel, stride"):
        receptive_field([(3, 0)])
    with pytest.raises(ValueError, match="kernel, stride"):
        receptive_field([(3,)])
