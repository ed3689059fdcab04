"""Penalties have the gradients the optimizers assume, decoupled weight decay reproduces AdamW and
(for SGD) the L2 penalty, early stopping stops when it should, and the image shifts are exact."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from companion.foundations.regularization import (EarlyStopping, RandomFlipAndShift, decoupled_weight_decay_,
                                                  l1_penalty, l2_penalty, random_horizontal_flip, random_shift,
                                                  shift_images, soft_threshold, weight_parameters)


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))


def _data(seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(16, 5, generator=generator), torch.randint(0, 3, (16,), generator=generator)


def test_weight_parameters_are_the_matrices():
    model = _model()
    assert [tuple(p.shape) for p in weight_parameters(model)] == [(8, 5), (3, 8)]


def test_penalties_values_and_gradients():
    weights = [torch.randn(4, 3, requires_grad=True), torch.randn(2, 4, requires_grad=True)]
    l1, l2 = l1_penalty(weights), l2_penalty(weights)
    torch.testing.assert_close(l1, sum(w.abs().sum() for w in weights))
    torch.testing.assert_close(l2, 0.5 * sum(w.pow(2).sum() for w in weights))
    grads_l1 = torch.autograd.grad(l1, weights)
    grads_l2 = torch.autograd.grad(l2, weights)
    for weight, grad_l1, grad_l2 in zip(weights, grads_l1, grads_l2):
        assert torch.equal(grad_l1, weight.sign())
        torch.testing.assert_close(grad_l2, weight.detach())
    with pytest.raises(ValueError, match="no parameters"):
        l1_penalty([])
    with pytest.raises(ValueError, match="no parameters"):
        l2_penalty(iter([]))


def test_soft_threshold_equals_softshrink_and_is_the_l1_minimiser():
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)
    torch.testing.assert_close(soft_threshold(x, 0.7), F.softshrink(x, 0.7))
    assert (soft_threshold(x, 0.7)[x.abs() <= 0.7] == 0).all()
    # brute force: argmin_w (w - x)^2 / 2 + 0.7 |w| on a fine grid
    grid = torch.linspace(-4, 4, 8001, dtype=torch.float64)
    objective = (grid[None, :] - x[:, None]) ** 2 / 2 + 0.7 * grid.abs()[None, :]  # (61, 8001)
    torch.testing.assert_close(grid[objective.argmin(1)], soft_threshold(x, 0.7), rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="threshold"):
        soft_threshold(x, -1.0)


def _train(model, optimizer, steps=5, l2=0.0, decoupled=0.0):
    inputs, labels = _data()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        if l2:
            loss = loss + l2 * l2_penalty(model.parameters())
        loss.backward()
        if decoupled:
            decoupled_weight_decay_(model.parameters(), optimizer.param_groups[0]["lr"], decoupled)
        optimizer.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_l2_penalty_equals_the_optimizers_weight_decay():
    for make in (lambda ps, wd: torch.optim.SGD(ps, lr=0.1, weight_decay=wd),
                 lambda ps, wd: torch.optim.Adam(ps, lr=0.01, weight_decay=wd)):
        model = _model()
        ours = _train(model, make(model.parameters(), 0.0), l2=0.05)
        model = _model()
        expected = _train(model, make(model.parameters(), 0.05))
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_decoupled_decay_with_adam_equals_adamw():
    model = _model()
    ours = _train(model, torch.optim.Adam(model.parameters(), lr=0.01), decoupled=0.3)
    model = _model()
    expected = _train(model, torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.3))
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-7)
    model = _model()
    coupled = _train(model, torch.optim.Adam(model.parameters(), lr=0.01), l2=0.3)
    assert (coupled - expected).abs().max() > 1e-3  # Adam + L2 is a different algorithm


def test_decoupled_decay_with_sgd_equals_l2_penalty():
    model = _model()
    ours = _train(model, torch.optim.SGD(model.parameters(), lr=0.1), decoupled=0.3)
    model = _model()
    expected = _train(model, torch.optim.SGD(model.parameters(), lr=0.1), l2=0.3)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="weight_decay"):
        decoupled_weight_decay_(model.parameters(), 0.1, -1.0)


def test_early_stopping_max_mode_with_patience():
    stopper = EarlyStopping(patience=2, mode="max")
    decisions = [stopper.step(value) for value in [0.5, 0.6, 0.6, 0.55, 0.7, 0.69, 0.68, 0.67, 0.9]]
    assert decisions == [False, False, False, False, False, False, False, True, True]
    assert stopper.best_value == 0.7 and stopper.best_epoch == 5 and stopper.stopped_epoch == 8
    assert stopper.should_stop


def test_early_stopping_min_mode_min_delta_and_nan():
    stopper = EarlyStopping(patience=1, mode="min", min_delta=0.1)
    assert not stopper.step(1.0)
    assert not stopper.step(0.95)  # not better by more than 0.1
    assert stopper.step(float("nan"))
    assert stopper.best_value == 1.0 and stopper.best_epoch == 1
    zero_patience = EarlyStopping(patience=0, mode="min")
    assert [zero_patience.step(v) for v in [3.0, 2.0, 2.5]] == [False, False, True]


def test_early_stopping_keeps_and_restores_the_best_weights():
    model = _model()
    stopper = EarlyStopping(patience=1)
    stopper.step(0.9, model)
    best = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    stopper.step(0.8, model)
    stopper.restore(model)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, best[name])
    with pytest.raises(ValueError, match="no weights"):
        EarlyStopping().restore(model)


@pytest.mark.parametrize("kwargs, message", [(dict(patience=-1), "patience"), (dict(mode="best"), "mode"),
                                             (dict(min_delta=-0.1), "min_delta")])
def test_early_stopping_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EarlyStopping(**kwargs)


def _images(batch=4):
    return torch.arange(batch * 2 * 5 * 6, dtype=torch.float32).reshape(batch, 2, 5, 6) + 1  # no zeros


def test_shift_images_equals_roll_with_fill():
    images = _images()
    offsets = torch.tensor([[0, 0], [1, -2], [-3, 2], [2, 5]])
    shifted = shift_images(images, offsets, fill=0.0)
    for image, result, (dy, dx) in zip(images, shifted, offsets.tolist()):
        expected = torch.roll(image, shifts=(dy, dx), dims=(1, 2))
        if dy > 0:
            expected[:, :dy] = 0
        if dy < 0:
            expected[:, dy:] = 0
        if dx > 0:
            expected[:, :, :dx] = 0
        if dx < 0:
            expected[:, :, dx:] = 0
        assert torch.equal(result, expected)
    assert torch.equal(shift_images(images, torch.zeros(4, 2, dtype=torch.long)), images)
    with pytest.raises(ValueError, match="offsets"):
        shift_images(images, torch.zeros(3, 2))


def test_random_flip_extremes_and_mixture():
    images = _images(64)
    assert torch.equal(random_horizontal_flip(images, 1.0), images.flip(-1))
    assert torch.equal(random_horizontal_flip(images, 0.0), images)
    mixed = random_horizontal_flip(images, 0.5, torch.Generator().manual_seed(0))
    flipped = (mixed == images.flip(-1)).flatten(1).all(1)  # (64,)
    unchanged = (mixed == images).flatten(1).all(1)  # (64,)
    assert torch.equal(flipped, ~unchanged) and 10 < int(flipped.sum()) < 54
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        random_horizontal_flip(images[0])


def test_random_shift_range_and_reproducibility():
    images = _images(32)
    shifted = random_shift(images, max_shift=2, generator=torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and shifted.dtype == images.dtype
    again = random_shift(images, max_shift=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(shifted, again)
    # the top-left input pixel moves by at most 2 in each direction
    for image, result in zip(images, shifted):
        rows, cols = (result[0] == image[0, 0, 0]).nonzero(as_tuple=True)
        assert len(rows) <= 1 and (len(rows) == 0 or (rows.item() <= 2 and cols.item() <= 2))
    assert torch.equal(random_shift(images, 0), images)
    with pytest.raises(ValueError, match="max_shift"):
        random_shift(images, -1)


def test_random_flip_and_shift_transform():
    transform = RandomFlipAndShift(max_shift=1, seed=3)
    images = _images(8)
    first = transform(images)
    assert first.shape == images.shape
    assert torch.equal(RandomFlipAndShift(max_shift=1, seed=3)(images), first)
    assert not torch.equal(transform(images), first)  # the next batch gets new draws
    assert torch.equal(RandomFlipAndShift(max_shift=0, flip_probability=0.0)(images), images)
    with pytest.raises(ValueError, match="flip_probability"):
        RandomFlipAndShift(flip_probability=2.0)
