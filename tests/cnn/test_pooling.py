"""Tests for companion/cnn/pooling.py: equal to F.max_pool2d and F.avg_pool2d."""

import pytest
import torch
import torch.nn.functional as F

from companion.cnn.pooling import avg_pool2d, max_pool2d

# (kernel_size, stride, padding, size)
CASES = [
    (2, None, 0, (8, 8)),
    (3, 2, 1, (7, 9)),
    ((3, 2), (2, 1), (1, 0), (6, 5)),
    (3, 1, 1, (5, 5)),
    (2, 3, 0, (7, 7)),   # stride larger than the window: gaps
]


@pytest.mark.parametrize("kernel_size, stride, padding, size", CASES)
def test_max_pool_equals_torch(kernel_size, stride, padding, size):
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = F.max_pool2d(x, kernel_size, stride, padding)
    torch.testing.assert_close(max_pool2d(x, kernel_size, stride, padding), expected, atol=0, rtol=0)


@pytest.mark.parametrize("kernel_size, stride, padding, size", CASES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_equals_torch(kernel_size, stride, padding, size, count_include_pad):
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = F.avg_pool2d(x, kernel_size, stride, padding, count_include_pad=count_include_pad)
    actual = avg_pool2d(x, kernel_size, stride, padding, count_include_pad=count_include_pad)
    torch.testing.assert_close(actual, expected, atol=1e-12, rtol=0)


def test_max_pool_padding_never_wins():
    x = -torch.ones(1, 1, 4, 4)  # all negative: zero padding would win the maximum
    assert (max_pool2d(x, 3, 1, 1) == -1).all()


def test_bad_inputs_raise_clear_errors():
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="half the kernel"):
        max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="larger than the padded input"):
        avg_pool2d(x, 5)
    with pytest.raises(ValueError, match="4-D"):
        max_pool2d(x[0, 0], 2)
