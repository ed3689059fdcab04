"""A shared trunk with several heads: outputs, the multi-task loss, accuracies, freezing."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from companion.data import ArrayDataset, make_loader
from companion.engine import TrainConfig, fit
from companion.foundations.multitask import (MultiHeadNetwork, MultiTaskLoss, count_parameters, mlp_trunk,
                                             set_trainable, task_accuracies)


def _network(seed=0):
    torch.manual_seed(seed)
    return MultiHeadNetwork(mlp_trunk(12, (16, 8)), {"class": nn.Linear(8, 5), "binary": nn.Linear(8, 2)})


def test_heads_share_the_trunk_features():
    model = _network()
    x = torch.randn(4, 3, 2, 2)
    outputs = model(x)
    assert list(outputs) == ["class", "binary"]
    assert outputs["class"].shape == (4, 5) and outputs["binary"].shape == (4, 2)
    features = model.trunk(x)
    torch.testing.assert_close(outputs["binary"], model.heads["binary"](features))


def test_parameter_count_is_trunk_plus_heads():
    model = _network()
    trunk = 12 * 16 + 16 + 16 * 8 + 8
    assert count_parameters(model.trunk) == trunk
    assert count_parameters(model) == trunk + (8 * 5 + 5) + (8 * 2 + 2)
    set_trainable(model.trunk, False)
    assert count_parameters(model, trainable_only=True) == (8 * 5 + 5) + (8 * 2 + 2)
    assert count_parameters(model) == trunk + 63


def test_loss_is_the_weighted_sum_of_cross_entropies():
    model = _network()
    x = torch.randn(6, 12)
    targets = torch.stack([torch.randint(0, 5, (6,)), torch.randint(0, 2, (6,))], dim=1)  # (6, 2)
    outputs = model(x)
    loss = MultiTaskLoss(["class", "binary"], weights={"binary": 0.5})(outputs, targets)
    expected = F.cross_entropy(outputs["class"], targets[:, 0]) + 0.5 * F.cross_entropy(outputs["binary"],
                                                                                        targets[:, 1])
    torch.testing.assert_close(loss, expected)
    single = MultiHeadNetwork(model.trunk, {"binary": model.heads["binary"]})
    torch.testing.assert_close(MultiTaskLoss(["class", "binary"])(single(x), targets),
                               F.cross_entropy(outputs["binary"], targets[:, 1]))


def test_fit_trains_a_two_head_network_and_accuracies_are_per_task():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(64, 1, 3, 4, generator=generator)
    classes = (images.flatten(1)[:, :5].argmax(dim=1))  # learnable from the pixels
    binary = (images.flatten(1)[:, 5] > 0).long()
    dataset = ArrayDataset(images, torch.stack([classes, binary], dim=1))
    loader = make_loader(dataset, batch_size=32, shuffle=True, seed=0)
    model = _network()
    tasks = ["class", "binary"]
    before = task_accuracies(model, loader, tasks)
    history = fit(model, torch.optim.Adam(model.parameters(), lr=1e-2), loader,
                  config=TrainConfig(epochs=20, device="cpu", progress=False), loss_fn=MultiTaskLoss(tasks))
    after = task_accuracies(model, loader, tasks)
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert set(after) == {"class", "binary"}
    assert after["class"] > before["class"] and after["binary"] > before["binary"]
    assert after["binary"] > 0.9 and model.training


def test_frozen_trunk_does_not_change_under_training():
    model = _network()
    set_trainable(model.trunk, False)
    trunk_before = [p.clone() for p in model.trunk.parameters()]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    targets = torch.stack([torch.randint(0, 5, (8,)), torch.randint(0, 2, (8,))], dim=1)
    MultiTaskLoss(["class", "binary"])(model(torch.randn(8, 12)), targets).backward()
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(trunk_before, model.trunk.parameters()))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="at least one head"):
        MultiHeadNetwork(mlp_trunk(4, (3,)), {})
    with pytest.raises(ValueError, match="hidden layer"):
        mlp_trunk(4, ())
    with pytest.raises(ValueError, match="distinct"):
        MultiTaskLoss(["a", "a"])
    with pytest.raises(ValueError, match="unknown task"):
        MultiTaskLoss(["a"], weights={"b": 1.0})
    model = _network()
    with pytest.raises(ValueError, match="no column"):
        MultiTaskLoss(["class", "other"])(model(torch.randn(2, 12)), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        MultiTaskLoss(["class", "binary"])(model(torch.randn(2, 12)), torch.zeros(2, dtype=torch.long))
