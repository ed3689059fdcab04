"""The scalar autograd engine gives the same values and gradients as torch.autograd."""

import random

import pytest
import torch
import torch.nn.functional as F

from companion.foundations.autograd import (Neuron, Value, ValueMLP, draw_graph, evaluate_expression,
                                            format_expression, logistic_loss, random_expression,
                                            topological_order)


def _torch_leaves(numbers):
    return [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in numbers]


@pytest.mark.parametrize("seed", range(16))
def test_random_expressions_match_torch(seed):
    rng = random.Random(1000 + seed)
    numbers = [rng.uniform(-2, 2) for _ in range(4)]
    tree = random_expression(num_leaves=4, depth=5, seed=seed)

    leaves = [Value(x) for x in numbers]
    out = evaluate_expression(tree, leaves)
    out.backward()

    tensors = _torch_leaves(numbers)
    expected = evaluate_expression(tree, tensors)
    gradients = torch.autograd.grad(expected, tensors, allow_unused=True)  # None: leaf not used

    assert out.data == pytest.approx(expected.item(), rel=1e-6, abs=1e-6), format_expression(tree)
    for leaf, gradient in zip(leaves, gradients):
        reference = 0.0 if gradient is None else gradient.item()
        assert leaf.grad == pytest.approx(reference, rel=1e-6, abs=1e-6), format_expression(tree)


def test_random_expressions_are_varied_and_reuse_leaves():
    trees = [random_expression(num_leaves=3, depth=4, seed=seed) for seed in range(40)]
    formulas = {format_expression(tree) for tree in trees}
    assert len(formulas) == 40
    joined = " ".join(formulas)
    for piece in ["exp(", "log(", "tanh(", "relu(", "^2", "^0.5", "^-1.5", "*", "/", " - ", " + ", "2.5 +"]:
        assert piece in joined, piece
    assert any(format_expression(tree).count("x0") > 1 for tree in trees)
    assert random_expression(3, 4, seed=7) == random_expression(3, 4, seed=7)


def test_a_value_used_twice_accumulates_its_gradient():
    a = Value(3.0)
    (a * a).backward()
    assert a.grad == 6.0  # d(a^2)/da = 2a, not a
    b = Value(3.0)
    (b + b).backward()
    assert b.grad == 2.0
    c = Value(-1.5)
    d = c * 2 + c.tanh()
    out = d * c + d.exp()
    out.backward()
    tc = torch.tensor(-1.5, dtype=torch.float64, requires_grad=True)
    td = tc * 2 + tc.tanh()
    (td * tc + td.exp()).backward()
    assert c.grad == pytest.approx(tc.grad.item(), rel=1e-12)


def test_leaf_gradients_accumulate_over_backward_calls_like_torch():
    x = Value(0.5)
    y = (x * x).exp()
    y.backward()
    first = x.grad
    y.backward()  # intermediate nodes restart from 0, the leaf adds up
    assert x.grad == pytest.approx(2 * first)
    tx = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    ty = (tx * tx).exp()
    ty.backward(retain_graph=True)
    ty.backward()
    assert x.grad == pytest.approx(tx.grad.item(), rel=1e-12)


def test_operators_with_plain_numbers():
    v = Value(4.0)
    results = {"2 * v": 2 * v, "v * 2": v * 2, "2 + v": 2 + v, "v + 2": v + 2, "2 - v": 2 - v,
               "v - 2": v - 2, "2 / v": 2 / v, "v / 2": v / 2, "-v": -v, "v ** 2": v ** 2, "v ** 0.5": v ** 0.5}
    expected = {"2 * v": 8, "v * 2": 8, "2 + v": 6, "v + 2": 6, "2 - v": -2, "v - 2": 2, "2 / v": 0.5,
                "v / 2": 2, "-v": -4, "v ** 2": 16, "v ** 0.5": 2}
    for name, result in results.items():
        assert isinstance(result, Value), name
        assert result.data == pytest.approx(expected[name]), name
    (2 / v).backward()
    assert v.grad == pytest.approx(-2 / 16)


def test_relu_derivative_at_zero_is_zero_like_torch():
    v = Value(0.0)
    v.relu().backward()
    t = torch.tensor(0.0, requires_grad=True)
    F.relu(t).backward()
    assert v.grad == t.grad.item() == 0.0


def test_topological_order():
    a, b = Value(1.0, "a"), Value(2.0, "b")
    c = a * b
    d = c + a
    e = d * c
    order = topological_order(e)
    assert order[-1] is e
    assert len(order) == len({id(node) for node in order}) == 5  # each node once
    position = {id(node): i for i, node in enumerate(order)}
    for node in order:
        for parent in node._parents:
            assert position[id(parent)] < position[id(node)]


def test_a_long_chain_does_not_hit_the_recursion_limit():
    x = Value(1.0)
    total = x
    for _ in range(5000):
        total = total + x * 0.001
    total.backward()
    assert x.grad == pytest.approx(1 + 5000 * 0.001)


def test_value_mlp_equals_a_torch_module():
    rng = random.Random(0)
    inputs = [[rng.gauss(0, 1) for _ in range(5)] for _ in range(6)]
    targets = [0, 1, 1, 0, 1, 0]
    mlp = ValueMLP((5, 4, 3, 1), seed=3)
    mlp.zero_grad()
    loss = sum(logistic_loss(mlp(x)[0], t) for x, t in zip(inputs, targets)) / len(targets)
    loss.backward()

    module = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3),
                                 torch.nn.Tanh(), torch.nn.Linear(3, 1)).double()
    module.load_state_dict({k: torch.tensor(v, dtype=torch.float64) for k, v in mlp.state_dict().items()})
    logits = module(torch.tensor(inputs, dtype=torch.float64)).squeeze(1)  # (6,)
    reference = F.binary_cross_entropy_with_logits(logits, torch.tensor(targets, dtype=torch.float64))
    reference.backward()

    assert loss.data == pytest.approx(reference.item(), rel=1e-12)
    gradients = {name: [] for name in mlp.state_dict()}
    for i, layer in enumerate(mlp.layers):
        gradients[f"{2 * i}.weight"] = [[w.grad for w in n.weights] for n in layer.neurons]
        gradients[f"{2 * i}.bias"] = [n.bias.grad for n in layer.neurons]
    for name, parameter in module.named_parameters():
        torch.testing.assert_close(torch.tensor(gradients[name], dtype=torch.float64), parameter.grad,
                                   rtol=0, atol=1e-12)


@pytest.mark.parametrize("logit", [-800.0, -30.0, -0.5, 0.0, 2.0, 40.0, 800.0])
@pytest.mark.parametrize("target", [0, 1])
def test_logistic_loss_equals_torch_and_never_overflows(logit, target):
    z = Value(logit)
    loss = logistic_loss(z, target)
    loss.backward()
    t = torch.tensor(logit, dtype=torch.float64, requires_grad=True)
    reference = F.binary_cross_entropy_with_logits(t, torch.tensor(float(target), dtype=torch.float64))
    reference.backward()
    # log(1 + e) for e ~ 1e-13 keeps only a few digits (torch uses log1p), hence an absolute tolerance.
    assert loss.data == pytest.approx(reference.item(), rel=1e-12, abs=1e-12)
    assert z.grad == pytest.approx(t.grad.item(), rel=1e-12, abs=1e-12)


def test_training_lowers_the_loss():
    points = [(-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)]
    targets = [0, 1, 1, 0]  # XOR
    mlp = ValueMLP((2, 6, 1), seed=1)
    losses = []
    for _ in range(60):
        mlp.zero_grad()
        loss = sum(logistic_loss(mlp(x)[0], t) for x, t in zip(points, targets)) / 4
        loss.backward()
        for p in mlp.parameters():
            p.data -= 1.0 * p.grad
        losses.append(loss.data)
    assert losses[-1] < 0.5 * losses[0]


def test_draw_graph_draws_every_node():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = Value(2.0, "a"), Value(-3.0, "b")
    out = (a * b + a).tanh()
    out.backward()
    ax = draw_graph(out)
    boxes = [text for text in ax.texts if "grad" in text.get_text()]  # the arrows are texts too
    assert len(boxes) == len(topological_order(out)) == 5
    plt.close(ax.figure)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="number"):
        Value("three")
    with pytest.raises(ValueError, match="positive"):
        Value(-1.0).log()
    with pytest.raises(ValueError, match="non-negative base"):
        Value(-2.0) ** 0.5
    with pytest.raises(ValueError, match="divides by zero"):
        Value(0.0) ** -1
    with pytest.raises(ValueError, match="exponent"):
        Value(2.0) ** Value(3.0)
    with pytest.raises(ValueError, match="overflows"):
        Value(1000.0).exp()
    with pytest.raises(ValueError, match="3 inputs"):
        Neuron(2, rng=random.Random(0))([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="activation"):
        Neuron(2, "sigmoid", rng=random.Random(0))
    with pytest.raises(ValueError, match="sizes"):
        ValueMLP((4,))
    with pytest.raises(ValueError, match="target"):
        logistic_loss(Value(0.0), 2)
    with pytest.raises(ValueError, match="depth"):
        random_expression(3, 0, seed=0)
