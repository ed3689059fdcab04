"""The perceptron learns AND and OR, never XOR, and takes the same steps as scikit-learn's."""

import warnings

import pytest
import torch

from companion.foundations import Perceptron, train_perceptron, truth_table


@pytest.mark.parametrize("gate", ["and", "or", "nand"])
def test_learns_linearly_separable_gates(gate):
    points, labels = truth_table(gate)
    perceptron = train_perceptron(points, labels, epochs=20)
    assert perceptron.mistakes_per_epoch[-1] == 0
    assert torch.equal(perceptron.predict(points), labels)


def test_mistake_count_within_novikoff_bound():
    # AND with the bias folded in as a weight on a constant 1: R^2 = max |(x, 1)|^2 = 3, and the
    # unit vector (2, 2, -3) / sqrt(17) separates the corners with margin gamma = 1 / sqrt(17).
    points, labels = truth_table("and")
    perceptron = train_perceptron(points, labels, epochs=50)
    assert sum(perceptron.mistakes_per_epoch) <= 3 * 17


def test_never_learns_xor():
    points, labels = truth_table("xor")
    perceptron = train_perceptron(points, labels, epochs=100)
    assert min(perceptron.mistakes_per_epoch) > 0
    assert not torch.equal(perceptron.predict(points), labels)


def test_zero_mistake_epoch_means_separated():
    # On separable data, once an epoch passes without a correction, every point is strictly on its
    # own side of the hyperplane (a point on it would have counted as a mistake).
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    labels = (points @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) > 0.3).long()
    perceptron = train_perceptron(points, labels, epochs=200)
    assert perceptron.mistakes_per_epoch[-1] == 0
    targets = labels.double() * 2 - 1
    assert bool((targets * perceptron.activation(points) > 0).all())


def test_learning_rate_only_scales_the_weights():
    points, labels = truth_table("or")
    slow = train_perceptron(points, labels, epochs=10, learning_rate=1.0)
    fast = train_perceptron(points, labels, epochs=10, learning_rate=0.25)
    assert slow.mistakes_per_epoch == fast.mistakes_per_epoch
    assert torch.equal(slow.weights * 0.25, fast.weights)
    assert torch.equal(slow.bias * 0.25, fast.bias)


def test_hand_built_perceptrons_compute_xor():
    points, labels = truth_table("xor")
    gate_or = Perceptron(torch.tensor([1.0, 1.0]), torch.tensor(-0.5))
    gate_and = Perceptron(torch.tensor([1.0, 1.0]), torch.tensor(-1.5))
    hidden = torch.stack([gate_or.predict(points), gate_and.predict(points)], dim=1).float()  # (4, 2)
    output = Perceptron(torch.tensor([1.0, -1.0]), torch.tensor(-0.5))  # OR and not AND
    assert torch.equal(output.predict(hidden), labels)


def _sklearn_perceptron(points, labels, epochs):
    linear_model = pytest.importorskip("sklearn.linear_model")
    from sklearn.exceptions import ConvergenceWarning

    model = linear_model.Perceptron(penalty=None, fit_intercept=True, eta0=1.0, shuffle=False, tol=None,
                                    max_iter=epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # tol=None: runs max_iter epochs, no early stop
        model.fit(points.numpy(), labels.numpy())
    return torch.from_numpy(model.coef_[0]), torch.tensor(float(model.intercept_[0]), dtype=torch.float64)


@pytest.mark.parametrize("gate", ["and", "or", "nand", "xor"])
@pytest.mark.parametrize("epochs", [1, 3, 10])
def test_equals_sklearn_on_truth_tables(gate, epochs):
    # scikit-learn's Perceptron is SGD on max(0, -t * a) with t in {-1, +1}: it updates when
    # t * a <= 0, by eta0 * t * x (and eta0 * t on the intercept), visiting the points in order
    # when shuffle=False. That is our rule, so on integer inputs the weights are equal exactly,
    # after every epoch, also on XOR where neither converges.
    points, labels = truth_table(gate, dtype=torch.float64)
    ours = train_perceptron(points, labels, epochs=epochs)
    weights, bias = _sklearn_perceptron(points, labels, epochs)
    assert torch.equal(ours.weights, weights)
    assert torch.equal(ours.bias, bias)


def test_equals_sklearn_on_random_points():
    # Real-valued inputs: both sum w0*x0 + w1*x1 + ... + b in float64 in the same order, so the
    # steps agree; a tolerance guards against a different rounding in scikit-learn's dot product.
    generator = torch.Generator().manual_seed(1)
    points = torch.randn(30, 2, generator=generator, dtype=torch.float64)
    labels = (points[:, 0] - 0.5 * points[:, 1] > 0.2).long()
    ours = train_perceptron(points, labels, epochs=7)
    weights, bias = _sklearn_perceptron(points, labels, 7)
    torch.testing.assert_close(ours.weights, weights, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours.bias, bias, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bad", [
    dict(points=torch.zeros(4), labels=torch.zeros(4, dtype=torch.long)),
    dict(points=torch.zeros(4, 2), labels=torch.zeros(3, dtype=torch.long)),
    dict(points=torch.zeros(4, 2), labels=torch.tensor([0, 1, 2, 1])),
    dict(points=torch.zeros(4, 2), labels=torch.tensor([-1, 1, 1, -1])),
])
def test_bad_inputs_raise(bad):
    with pytest.raises(ValueError):
        train_perceptron(**bad, epochs=1)


def test_bad_epochs_or_learning_rate_raise():
    points, labels = truth_table("and")
    with pytest.raises(ValueError):
        train_perceptron(points, labels, epochs=0)
    with pytest.raises(ValueError):
        train_perceptron(points, labels, epochs=1, learning_rate=0.0)


def test_predict_checks_shape():
    perceptron = train_perceptron(*truth_table("or"), epochs=5)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        perceptron.predict(torch.zeros(4, 3))


def test_unknown_gate_raises():
    with pytest.raises(ValueError, match="known gates"):
        truth_table("implies")

