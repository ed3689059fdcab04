"""Our optimizers follow torch.optim's trajectories step by step, and reject bad hyperparameters."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from companion.foundations import optim

STEPS = 100


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: a second intra-op thread only adds synchronisation, which on a busy machine
    # made these tests ten times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, weight_decay=1e-2)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.5, weight_decay=1e-2)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=1e-2)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=1e-2, weight_decay=1e-2, initial_accumulator_value=0.1)),
    ("Adagrad", dict(lr=0.1, eps=0.1)),  # a large eps makes its placement visible
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.95, weight_decay=1e-2)),
    ("Adadelta", dict(eps=0.1)),
    ("RMSprop", dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-2, alpha=0.9, eps=0.1, weight_decay=1e-2)),
    ("RMSprop", dict(lr=1e-3, momentum=0.9, centered=True)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, weight_decay=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.5, 0.9), eps=0.1, amsgrad=True)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
]


def _problem(seed: int = 0):
    """A small float64 MLP and a fixed batch of random data."""
    generator = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64) * 0.5)
    inputs = torch.randn(64, 6, generator=generator, dtype=torch.float64)  # (N, D)
    targets = torch.randint(0, 4, (64,), generator=generator)  # (N,)
    return model, inputs, targets


def _trajectory(optimizer_class, hyperparameters, steps=STEPS, scheduler=None):
    """Train the problem's model; return the flattened parameters after every step, (steps, P)."""
    model, inputs, targets = _problem()
    optimizer = optimizer_class(model.parameters(), **hyperparameters)
    schedule = scheduler(optimizer) if scheduler is not None else None
    trajectory = []
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        trajectory.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    return torch.stack(trajectory)


@pytest.mark.parametrize("name, hyperparameters", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_same_trajectory_as_torch(name, hyperparameters):
    ours = _trajectory(getattr(optim, name), hyperparameters)
    reference = _trajectory(getattr(torch.optim, name), hyperparameters)
    assert (ours[-1] - ours[0]).abs().max() > 1e-3, "the parameters should move"
    # Same float64 arithmetic up to the order of operations: far below the 1e-6 the book states.
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name, hyperparameters", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=1e-2))])
def test_same_trajectory_under_one_cycle_schedule(name, hyperparameters):
    # OneCycleLR changes lr and momentum (or beta1) every step: the optimizers must read them live.
    def one_cycle(optimizer):
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=hyperparameters["lr"], total_steps=STEPS)

    ours = _trajectory(getattr(optim, name), hyperparameters, scheduler=one_cycle)
    reference = _trajectory(getattr(torch.optim, name), hyperparameters, scheduler=one_cycle)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-10)


def test_parameter_groups_and_missing_gradients():
    model, inputs, targets = _problem()
    frozen = torch.zeros(3, dtype=torch.float64, requires_grad=True)  # never gets a gradient
    first, second = model[0].parameters(), model[2].parameters()
    optimizer = optim.Adam([{"params": list(first) + [frozen]}, {"params": list(second), "lr": 0.1}], lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.zero_grad()
    F.cross_entropy(model(inputs), targets).backward()
    optimizer.step()
    assert torch.equal(frozen, torch.zeros(3, dtype=torch.float64)) and frozen not in optimizer.state
    # Adam's first step moves every coordinate by about lr (m̂/√v̂ = ±1 when the gradient is not tiny).
    first_move = (model[0].weight - before[0]).abs().max().item()
    second_move = (model[2].weight - before[2]).abs().max().item()
    assert first_move == pytest.approx(1e-3, rel=1e-3) and second_move == pytest.approx(0.1, rel=1e-3)


def test_state_dict_resumes_identically():
    model, inputs, targets = _problem()
    optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)

    def train(steps):
        for _ in range(steps):
            optimizer.zero_grad()
            F.cross_entropy(model(inputs), targets).backward()
            optimizer.step()

    train(10)
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    saved_optimizer = copy.deepcopy(optimizer.state_dict())  # state_dict() shares the buffers
    train(10)
    expected = [p.detach().clone() for p in model.parameters()]
    model.load_state_dict(saved_model)
    optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    optimizer.load_state_dict(saved_optimizer)
    train(10)
    for parameter, target in zip(model.parameters(), expected):
        assert torch.equal(parameter, target)


def test_closure_returns_the_loss():
    model, inputs, targets = _problem()
    optimizer = optim.RMSprop(model.parameters())

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert loss is not None and loss.requires_grad


def test_adamw_decay_is_decoupled_from_the_gradient():
    # With a zero gradient Adam's L2 term is rescaled to a step of size lr, whatever the weight;
    # AdamW shrinks every weight by the same factor 1 - lr * weight_decay.
    weights = torch.tensor([0.1, 1.0, 100.0], dtype=torch.float64)
    lr, weight_decay = 1e-2, 0.1
    adamw_point = weights.clone().requires_grad_(True)
    adam_point = weights.clone().requires_grad_(True)
    adamw = optim.AdamW([adamw_point], lr=lr, weight_decay=weight_decay)
    adam = optim.Adam([adam_point], lr=lr, weight_decay=weight_decay)
    for point, optimizer in [(adamw_point, adamw), (adam_point, adam)]:
        point.grad = torch.zeros_like(point)
        optimizer.step()
    torch.testing.assert_close(adamw_point.detach(), weights * (1 - lr * weight_decay))
    torch.testing.assert_close((weights - adam_point.detach()), torch.full_like(weights, lr), rtol=1e-5, atol=0)


@pytest.mark.parametrize("make", [
    lambda p: optim.SGD(p, lr=-0.1),
    lambda p: optim.SGD(p, lr=0.1, momentum=-0.5),
    lambda p: optim.SGD(p, lr=0.1, weight_decay=-1e-4),
    lambda p: optim.SGD(p, lr=0.1, nesterov=True),
    lambda p: optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
    lambda p: optim.Adagrad(p, lr=-1.0),
    lambda p: optim.Adagrad(p, eps=-1e-10),
    lambda p: optim.Adagrad(p, initial_accumulator_value=-1.0),
    lambda p: optim.Adadelta(p, rho=1.5),
    lambda p: optim.Adadelta(p, lr=-1.0),
    lambda p: optim.RMSprop(p, alpha=1.0),
    lambda p: optim.RMSprop(p, momentum=-0.1),
    lambda p: optim.Adam(p, lr=-1e-3),
    lambda p: optim.Adam(p, betas=(1.0, 0.999)),
    lambda p: optim.Adam(p, betas=(0.9, 1.0)),
    lambda p: optim.Adam(p, betas=(-0.1, 0.999)),
    lambda p: optim.Adam(p, eps=-1e-8),
    lambda p: optim.AdamW(p, betas=(0.9, 1.5)),
    lambda p: optim.AdamW(p, weight_decay=-0.01),
])
def test_bad_hyperparameters_raise(make):
    with pytest.raises(ValueError):
        make([torch.zeros(2, requires_grad=True)])


def test_error_names_the_problem():
    with pytest.raises(ValueError, match=r"betas\[1\] must be in \[0, 1\)"):
        optim.Adam([torch.zeros(2, requires_grad=True)], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="lr must be >= 0"):
        optim.SGD([torch.zeros(2, requires_grad=True)], lr=-1.0)


def test_test_functions():
    assert optim.rosenbrock(torch.tensor([1.0, 1.0])).item() == 0.0
    assert optim.rosenbrock(torch.tensor([0.0, 0.0])).item() == 1.0
    hessian = torch.autograd.functional.hessian(
        lambda point: optim.elongated_quadratic(point, condition_number=25.0), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(torch.linalg.eigvalsh(hessian), torch.tensor([1.0, 25.0], dtype=torch.float64))


def test_optimize_point_records_the_path():
    path, values = optim.optimize_point(optim.rosenbrock, (-1.0, 1.0), steps=200, optimizer=optim.Adam, lr=0.05)
    assert path.shape == (201, 2) and values.shape == (201,)
    assert path[0].tolist() == [-1.0, 1.0]
    torch.testing.assert_close(values, optim.rosenbrock(path))
    assert values[-1] < values[0] / 10
    assert all(math.isfinite(v) for v in values.tolist())
