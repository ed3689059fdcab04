"""Our activations equal torch.nn.functional's, in value and in autograd derivative."""

import math

import pytest
import torch
import torch.nn.functional as F

from companion.foundations.activations import (ACTIVATIONS, dead_units, elu, gelu, leaky_relu, log_softmax,
                                               relu, sigmoid, softmax, tanh)

REFERENCES = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": F.relu, "leaky_relu": F.leaky_relu,
              "elu": F.elu, "gelu": F.gelu}
# float64 to 1e-6 absolute, as stated in the book. float32 keeps 7 significant digits and two formulas
# round differently (where float32 tanh saturates to exactly -1, torch's GELU derivative is 0 and ours
# about -1e-6), so float32 is compared to 1e-5.
TOLERANCES = {torch.float64: {"rtol": 0.0, "atol": 1e-6}, torch.float32: {"rtol": 1e-5, "atol": 1e-5}}


def _inputs(dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    random = 6 * torch.randn(2000, generator=generator, dtype=dtype)  # (2000,), mostly in [-18, 18]
    special = torch.tensor([0.0, -0.0, 1e-8, -1e-8, 30.0, -30.0, 100.0, -100.0, 1e4, -1e4], dtype=dtype)
    return torch.cat([random, special])  # (2010,)


def _value_and_derivative(function, x):
    x = x.clone().requires_grad_(True)
    y = function(x)
    (derivative,) = torch.autograd.grad(y.sum(), x)  # element-wise, so d(sum)/dx_i = f'(x_i)
    return y.detach(), derivative


def test_every_activation_has_a_reference():
    assert ACTIVATIONS.keys() == REFERENCES.keys()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_equals_torch_in_value_and_derivative(name, dtype):
    x = _inputs(dtype)
    ours, our_derivative = _value_and_derivative(ACTIVATIONS[name], x)
    theirs, their_derivative = _value_and_derivative(REFERENCES[name], x)
    assert ours.dtype == dtype and ours.shape == x.shape
    torch.testing.assert_close(ours, theirs, **TOLERANCES[dtype])
    torch.testing.assert_close(our_derivative, their_derivative, **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_gelu_tanh_approximation_equals_torch(dtype):
    x = _inputs(dtype)[:2000]  # torch's own derivative is nan where x^3 overflows, so no huge inputs
    ours, our_derivative = _value_and_derivative(lambda t: gelu(t, approximate="tanh"), x)
    theirs, their_derivative = _value_and_derivative(lambda t: F.gelu(t, approximate="tanh"), x)
    torch.testing.assert_close(ours, theirs, **TOLERANCES[dtype])
    torch.testing.assert_close(our_derivative, their_derivative, **TOLERANCES[dtype])
    assert (gelu(x, approximate="tanh") - gelu(x)).abs().max() < 1e-3  # a close approximation


@pytest.mark.parametrize("slope", [0.01, 0.2, 1.5])
def test_leaky_relu_slopes(slope):
    x = _inputs(torch.float64, seed=1)
    ours, our_derivative = _value_and_derivative(lambda t: leaky_relu(t, slope), x)
    theirs, their_derivative = _value_and_derivative(lambda t: F.leaky_relu(t, slope), x)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    torch.testing.assert_close(our_derivative, their_derivative, rtol=0, atol=1e-6)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_elu_alphas(alpha):
    x = _inputs(torch.float64, seed=2)
    ours, our_derivative = _value_and_derivative(lambda t: elu(t, alpha), x)
    theirs, their_derivative = _value_and_derivative(lambda t: F.elu(t, alpha), x)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    torch.testing.assert_close(our_derivative, their_derivative, rtol=0, atol=1e-6)
    assert elu(torch.tensor([-1e4], dtype=torch.float64), alpha).item() == -alpha  # saturates at -alpha


def test_infinities_and_nan_behave_like_torch():
    x = torch.tensor([float("inf"), -float("inf"), float("nan")], dtype=torch.float64)
    for name, function in ACTIVATIONS.items():
        torch.testing.assert_close(function(x), REFERENCES[name](x), equal_nan=True, msg=name)


def test_derivative_bounds():
    x = torch.linspace(-20, 20, 4001, dtype=torch.float64)  # includes 0
    _, sigmoid_derivative = _value_and_derivative(sigmoid, x)
    _, tanh_derivative = _value_and_derivative(tanh, x)
    assert sigmoid_derivative.max().item() == pytest.approx(0.25, abs=1e-15)
    assert sigmoid_derivative.argmax().item() == 2000  # at x = 0
    assert tanh_derivative.max().item() == pytest.approx(1.0, abs=1e-15)
    _, relu_derivative = _value_and_derivative(relu, x)
    assert set(relu_derivative.tolist()) == {0.0, 1.0}
    assert relu_derivative[2000].item() == 0.0  # at 0, as torch


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_and_log_softmax_equal_torch(dim, dtype):
    generator = torch.Generator().manual_seed(3)
    x = 20 * torch.randn(7, 5, 3, generator=generator, dtype=dtype)  # (7, 5, 3)
    torch.testing.assert_close(softmax(x, dim), F.softmax(x, dim), **TOLERANCES[dtype])
    torch.testing.assert_close(log_softmax(x, dim), F.log_softmax(x, dim), **TOLERANCES[dtype])
    x = x.requires_grad_(True)
    weights = torch.randn(7, 5, 3, generator=generator, dtype=dtype)  # a random upstream gradient
    for ours, theirs in [(softmax, F.softmax), (log_softmax, F.log_softmax)]:
        (our_gradient,) = torch.autograd.grad((ours(x, dim) * weights).sum(), x)
        (their_gradient,) = torch.autograd.grad((theirs(x, dim) * weights).sum(), x)
        torch.testing.assert_close(our_gradient, their_gradient, **TOLERANCES[dtype])


def test_softmax_is_stable_and_shift_invariant():
    x = torch.tensor([[1000.0, 999.0, -1000.0], [-1000.0, -1001.0, -3000.0]])  # (2, 3) float32
    naive = torch.exp(x) / torch.exp(x).sum(dim=1, keepdim=True)
    assert naive[0, :2].isnan().all() and naive[1].isnan().all()  # inf / inf and 0 / 0
    probabilities = softmax(x, dim=1)
    assert torch.isfinite(probabilities).all()
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(2))
    torch.testing.assert_close(probabilities[0], softmax(x[0] - 1000.0, dim=0))
    torch.testing.assert_close(softmax(x + 123.0, dim=1), probabilities)
    log_probabilities = log_softmax(x, dim=1)
    assert torch.isfinite(log_probabilities).all()  # log(softmax) would be -inf for the third column
    assert log_probabilities[0, 2].item() == pytest.approx(-2000.0 - math.log1p(math.exp(-1.0)), abs=1e-3)


def test_dead_units():
    activations = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0, 0.5]])  # (N=3, H=3)
    assert dead_units(activations).tolist() == [True, False, False]
    assert dead_units(relu(-torch.ones(4, 2))).all()


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="floating-point"):
        sigmoid(torch.arange(3))
    with pytest.raises(ValueError, match="torch.Tensor"):
        relu([1.0, -1.0])
    with pytest.raises(ValueError, match="approximate"):
        gelu(torch.zeros(2), approximate="sigmoid")
    with pytest.raises(ValueError, match="alpha"):
        elu(torch.zeros(2), alpha=0.0)
    with pytest.raises(ValueError, match="dim=2"):
        softmax(torch.zeros(3, 4), dim=2)
    with pytest.raises(ValueError, match="dim"):
        log_softmax(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"\(N, H\)"):
        dead_units(torch.zeros(2, 3, 4))
