"""The hand-written backward pass equals torch.autograd, and the network it trains learns XOR."""

import pytest
import torch
import torch.nn.functional as F

from companion.data.synthetic import xor_points
from companion.foundations import TwoLayerMLP, binary_cross_entropy_with_logits, gradient_descent, truth_table


def _random_problem(seed, count, in_features, hidden_features):
    generator = torch.Generator().manual_seed(seed)
    model = TwoLayerMLP(in_features, hidden_features, generator=generator, dtype=torch.float64)
    inputs = torch.randn(count, in_features, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 2, (count,), generator=generator).double()
    return model, inputs, targets


def _autograd_gradients(model, inputs, targets):
    parameters = model.parameters()
    for parameter in parameters.values():
        parameter.requires_grad_(True)
    loss = binary_cross_entropy_with_logits(model.forward(inputs), targets)
    gradients = torch.autograd.grad(loss, list(parameters.values()))
    for parameter in parameters.values():
        parameter.requires_grad_(False)
    return dict(zip(parameters, gradients))


@pytest.mark.parametrize("seed, count, in_features, hidden_features",
                         [(0, 4, 2, 2), (1, 16, 2, 4), (2, 7, 5, 3), (3, 32, 3, 16), (4, 1, 1, 1)])
def test_hand_gradients_equal_autograd(seed, count, in_features, hidden_features):
    model, inputs, targets = _random_problem(seed, count, in_features, hidden_features)
    expected = _autograd_gradients(model, inputs, targets)
    model.forward(inputs)
    gradients = model.backward(targets)
    assert gradients.keys() == expected.keys() == {"W1", "b1", "W2", "b2"}
    for name, parameter in model.parameters().items():
        assert gradients[name].shape == parameter.shape
        torch.testing.assert_close(gradients[name], expected[name], rtol=0, atol=1e-6)


def test_hand_gradients_equal_autograd_with_large_logits():
    # Saturated tanh units and |logits| ~ 30: the stable loss and its gradient must still agree.
    model, inputs, targets = _random_problem(5, 8, 2, 4)
    for parameter in model.parameters().values():
        parameter.mul_(20)
    expected = _autograd_gradients(model, inputs, targets)
    model.forward(inputs)
    gradients = model.backward(targets)
    for name in expected:
        torch.testing.assert_close(gradients[name], expected[name], rtol=0, atol=1e-6)


def test_loss_equals_torch():
    generator = torch.Generator().manual_seed(0)
    logits = 30 * torch.randn(50, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 2, (50,), generator=generator).double()
    torch.testing.assert_close(binary_cross_entropy_with_logits(logits, targets),
                               F.binary_cross_entropy_with_logits(logits, targets), rtol=0, atol=1e-12)


def test_forward_equals_torch_modules():
    model, inputs, _ = _random_problem(6, 10, 3, 5)
    reference = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).double()
    reference.load_state_dict({"0.weight": model.W1, "0.bias": model.b1, "2.weight": model.W2, "2.bias": model.b2})
    with torch.no_grad():
        torch.testing.assert_close(model.forward(inputs), reference(inputs).squeeze(1), rtol=0, atol=1e-12)


def test_bad_input_shapes_raise():
    model, inputs, targets = _random_problem(0, 4, 2, 3)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        model.forward(torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        model.forward(torch.zeros(4, dtype=torch.float64))
    model.forward(inputs)
    with pytest.raises(ValueError, match="targets"):
        model.backward(targets[:3])
    with pytest.raises(ValueError, match="targets"):
        model.backward(targets.unsqueeze(1))
    with pytest.raises(ValueError, match="same shape"):
        binary_cross_entropy_with_logits(torch.zeros(4), torch.zeros(4, 1))


def test_backward_before_forward_raises():
    model, _, targets = _random_problem(0, 4, 2, 3)
    with pytest.raises(RuntimeError, match="forward"):
        model.backward(targets)


def test_gradient_descent_lowers_the_loss_and_updates_every_parameter():
    model, inputs, targets = _random_problem(7, 16, 2, 4)
    before = {name: parameter.clone() for name, parameter in model.parameters().items()}
    losses = gradient_descent(model, inputs, targets.long(), steps=50, learning_rate=0.5)
    assert len(losses) == 50
    assert losses[-1] < losses[0]
    for name, parameter in model.parameters().items():
        assert not torch.equal(parameter, before[name])


def test_xor_mlp_classifies_all_four_corners():
    # What no perceptron can do, one hidden layer trained by hand-written backprop does.
    points, labels = xor_points(size=200, noise=0.15, seed=0)
    model = TwoLayerMLP(2, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    losses = gradient_descent(model, points, labels, steps=200, learning_rate=2.0)
    assert losses[-1] < 0.1 * losses[0]
    corners, xor = truth_table("xor")
    assert torch.equal(model.predict(corners), xor)
