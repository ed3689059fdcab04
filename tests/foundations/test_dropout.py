"""Inverted dropout equals torch.nn.Dropout: same mask for the same seed (CPU), same expectation,
identity in eval mode, and the p = 0 / p = 1 edge cases."""

import pytest
import torch
from torch import nn

from companion.foundations.dropout import Dropout, dropout


@pytest.mark.parametrize("shape", [(7,), (4, 5), (3, 2, 6, 6)])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_seed_same_output_as_torch(shape, p, dtype):
    x = torch.randn(shape, dtype=dtype)
    torch.manual_seed(123)
    expected = nn.Dropout(p)(x)
    torch.manual_seed(123)
    ours = Dropout(p)(x)
    assert torch.equal(ours, expected)


def test_same_gradient_as_torch():
    x = torch.randn(16, 8, requires_grad=True)
    torch.manual_seed(5)
    (expected,) = torch.autograd.grad(nn.Dropout(0.3)(x).pow(2).sum(), x)
    torch.manual_seed(5)
    (ours,) = torch.autograd.grad(Dropout(0.3)(x).pow(2).sum(), x)
    assert torch.equal(ours, expected)


def test_kept_units_are_scaled_and_dropped_units_are_zero():
    x = torch.rand(1000) + 1.0  # no zeros in the input
    y = dropout(x, p=0.25, generator=torch.Generator().manual_seed(0))
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    assert 0.2 < 1 - kept.float().mean().item() < 0.3


def test_expectation_equals_input():
    x = torch.linspace(-2, 2, 50)
    generator = torch.Generator().manual_seed(0)
    samples = torch.stack([dropout(x, 0.4, generator=generator) for _ in range(4000)])  # (4000, 50)
    # each mean has standard error |x| sqrt(p / (1 - p)) / sqrt(4000) < 0.026
    torch.testing.assert_close(samples.mean(0), x, rtol=0, atol=0.1)
    torch.testing.assert_close(samples.var(0), x**2 * 0.4 / 0.6, rtol=0, atol=0.3)


def test_eval_mode_and_p_zero_are_the_identity():
    x = torch.randn(4, 6)
    layer = Dropout(0.5).eval()
    assert torch.equal(layer(x), x)
    assert torch.equal(layer(x), nn.Dropout(0.5).eval()(x))
    assert torch.equal(Dropout(0.0)(x), x)
    assert torch.equal(dropout(x, 0.7, training=False), x)


def test_p_one_drops_everything_like_torch():
    x = torch.randn(4, 6)
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))
    assert torch.equal(Dropout(1.0)(x), nn.Dropout(1.0)(x))


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_bad_probability(p):
    with pytest.raises(ValueError, match="p must be in"):
        Dropout(p)
    with pytest.raises(ValueError, match="p must be in"):
        dropout(torch.ones(3), p)
    with pytest.raises(ValueError):  # PyTorch refuses it too
        nn.Dropout(p)


def test_train_and_eval_switch_with_the_module():
    model = nn.Sequential(nn.Linear(3, 3), Dropout(0.5))
    assert "Dropout(p=0.5)" in repr(model)
    x = torch.randn(200, 3)
    model.eval()
    first, second = model(x), model(x)
    assert torch.equal(first, second)
    model.train()
    assert not torch.equal(model(x), first)
