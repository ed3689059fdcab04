"""A shared trunk with one head per task: multi-task learning and transfer learning.

A *trunk* maps an input to a feature vector; a *head* maps the features to one task's logits.
Multi-task learning (Caruana, 1997) trains one trunk for several tasks at once, so that each task's
training signal shapes the features the others use. Transfer learning reuses a trunk trained on one
task for another, either frozen (only a new head is trained: a *linear probe*) or as the starting
point of further training (*fine-tuning*).

The network returns a dict ``{task name: logits}``. The targets of a batch are a ``(B, T)`` integer
tensor whose column ``t`` holds the labels of task ``tasks[t]``; :class:`MultiTaskLoss` scores every
head against its column, so ``companion.engine.fit`` trains these models unchanged.

Taught in: book/01_foundations/09_generalization_transfer_multitask.ipynb.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from companion.engine.batches import split_batch


def mlp_trunk(in_features: int = 784, hidden_sizes: Sequence[int] = (256, 128)) -> nn.Sequential:
    """``Flatten``, then ``Linear -> ReLU`` per hidden layer: ``(B, ...) -> (B, hidden_sizes[-1])``."""
    if not hidden_sizes:
        raise ValueError("a trunk needs at least one hidden layer, e.g. hidden_sizes=(256,).")
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*layers)


class MultiHeadNetwork(nn.Module):
    """One trunk, several heads, each applied to the same features.

    Args:
        trunk: maps ``(B, ...)`` inputs to ``(B, F)`` features.
        heads: task name -> module mapping ``(B, F)`` features to that task's ``(B, C_task)`` logits.
            One head gives an ordinary single-task network.
    """

    def __init__(self, trunk: nn.Module, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not heads:
            raise ValueError("give at least one head, e.g. heads={'class': nn.Linear(128, 10)}.")
        self.trunk = trunk
        self.heads = nn.ModuleDict(heads)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, ...)`` inputs -> ``{task: (B, C_task) logits}``, in the order of ``heads``."""
        features = self.trunk(x)  # (B, F)
        return {name: head(features) for name, head in self.heads.items()}


class MultiTaskLoss:
    """Weighted sum of one cross-entropy per head: ``sum_t weight_t * CE(logits_t, targets[:, t])``.

    Args:
        tasks: the task of each target column, e.g. ``("class", "upper_body")``.
        weights: task name -> weight of its loss (default 1 for every task).
    """

    def __init__(self, tasks: Sequence[str], weights: Mapping[str, float] | None = None) -> None:
        self.tasks = list(tasks)
        if len(set(self.tasks)) != len(self.tasks) or not self.tasks:
            raise ValueError(f"tasks must be distinct names, one per target column, got {self.tasks}.")
        self.weights = {task: 1.0 for task in self.tasks}
        for task, weight in (weights or {}).items():
            if task not in self.weights:
                raise ValueError(f"weight given for unknown task {task!r}; tasks are {self.tasks}.")
            self.weights[task] = float(weight)

    def column(self, task: str) -> int:
        """The target column that holds ``task``'s labels."""
        if task not in self.tasks:
            raise ValueError(f"the model has a head {task!r} but the targets have no column for it; "
                             f"target columns are {self.tasks}.")
        return self.tasks.index(task)

    def __call__(self, outputs: Mapping[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """Loss of a batch.

        Args:
            outputs: ``{task: (B, C_task) logits}`` for some or all of ``tasks``.
            targets: ``(B, T)`` integer labels, column ``t`` for ``tasks[t]``.

        Returns:
            The weighted sum of the heads' mean cross-entropies, a scalar.
        """
        if targets.dim() != 2 or targets.shape[1] != len(self.tasks):
            raise ValueError(f"targets must be (B, {len(self.tasks)}), one column per task "
                             f"{self.tasks}, got shape {tuple(targets.shape)}.")
        losses = []
        for task, logits in outputs.items():
            column = self.column(task)  # checked before the weight is looked up
            losses.append(self.weights[task] * F.cross_entropy(logits, targets[:, column]))
        return torch.stack(losses).sum()


def task_accuracies(model: nn.Module, loader: Iterable, tasks: Sequence[str],
                    device: str | torch.device | None = None) -> dict[str, float]:
    """Accuracy of every head of ``model`` on ``loader``, in ``eval()`` mode without gradients.

    Args:
        model: returns ``{task: (B, C_task) logits}``.
        loader: yields ``(inputs, targets)`` with targets ``(B, T)``, column ``t`` for ``tasks[t]``.
        tasks: the task of each target column.
        device: where to run (default: where the model's first parameter is).

    Returns:
        ``{task: fraction correct}`` for every head the model has.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    columns = MultiTaskLoss(tasks)  # maps each head to its target column, with a clear error
    correct: dict[str, int] = {}
    count = 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                inputs, targets = split_batch(batch)
                outputs = model(inputs.to(device))
                targets = targets.to(device)
                for task, logits in outputs.items():
                    labels = targets[:, columns.column(task)]  # (B,)
                    hits = (logits.argmax(dim=1) == labels).sum()  # (B,) -> ()
                    correct[task] = correct.get(task, 0) + int(hits)
                count += targets.shape[0]
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("the loader gave no batches; there is nothing to evaluate.")
    return {task: hits / count for task, hits in correct.items()}


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def set_trainable(module: nn.Module, trainable: bool) -> nn.Module:
    """Freeze (``False``) or unfreeze (``True``) every parameter of ``module``; returns it."""
    for parameter in module.parameters():
        parameter.requires_grad_(trainable)
    return module
