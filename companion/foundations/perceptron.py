"""The perceptron and its error-correction learning rule, written as plainly as possible.

A perceptron computes ``w . x + b`` and answers class 1 when that activation is positive, class 0
otherwise. Training visits the points in order; whenever a point is on the wrong side of the line
(or exactly on it) the rule moves the line towards that point:

    t = +1 for class 1, -1 for class 0
    mistake  <=>  t * (w . x + b) <= 0
    w <- w + learning_rate * t * x,   b <- b + learning_rate * t

Counting a point *on* the boundary as a mistake is the convention of Novikoff's convergence proof
and of ``sklearn.linear_model.Perceptron``; with it, this code and scikit-learn take the same steps
(``tests/foundations/test_perceptron.py`` checks it).

Taught in: book/01_foundations/01_perceptron_xor.ipynb.
"""

from __future__ import annotations

import dataclasses

import torch

# The four corners of the unit square, in the order of a truth table: (0,0), (0,1), (1,0), (1,1).
_CORNERS = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))
_GATES = {
    "and": (0, 0, 0, 1),
    "or": (0, 1, 1, 1),
    "nand": (1, 1, 1, 0),
    "xor": (0, 1, 1, 0),
}


def truth_table(gate: str, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The four inputs of a two-input Boolean gate and its outputs.

    Args:
        gate: ``"and"``, ``"or"``, ``"nand"`` or ``"xor"`` (case-insensitive).
        dtype: floating dtype of the inputs.

    Returns:
        ``(4, 2)`` inputs (the corners of the unit square, in truth-table order) and ``(4,)`` int64
        outputs in {0, 1}.

    Raises:
        ValueError: unknown gate.
    """
    key = gate.strip().lower()
    if key not in _GATES:
        raise ValueError(f"unknown gate {gate!r}; known gates are: {', '.join(sorted(_GATES))}.")
    return torch.tensor(_CORNERS, dtype=dtype), torch.tensor(_GATES[key], dtype=torch.long)


@dataclasses.dataclass
class Perceptron:
    """A linear threshold unit: class 1 where ``w . x + b > 0``, class 0 elsewhere.

    Build one by hand (``Perceptron(torch.tensor([1.0, 1.0]), torch.tensor(-1.5))`` computes AND)
    or get a trained one from :func:`train_perceptron`.
    """

    weights: torch.Tensor  # (D,)
    bias: torch.Tensor  # () a scalar tensor
    mistakes_per_epoch: list[int] = dataclasses.field(default_factory=list)  # filled by training

    def activation(self, points: torch.Tensor) -> torch.Tensor:
        """``w . x + b`` for each point: ``(N, D)`` points to ``(N,)`` activations."""
        _check_points(points, self.weights.shape[0])
        points = points.to(self.weights.dtype)
        return points @ self.weights + self.bias  # (N, D) @ (D,) -> (N,)

    def predict(self, points: torch.Tensor) -> torch.Tensor:
        """Class of each point: ``(N, D)`` points to ``(N,)`` int64 labels in {0, 1}."""
        return (self.activation(points) > 0).long()


def train_perceptron(points: torch.Tensor, labels: torch.Tensor, epochs: int = 10,
                     learning_rate: float = 1.0) -> Perceptron:
    """Rosenblatt's error-correction rule, one point at a time, in the order given.

    Weights and bias start at zero, so the learning rate only scales them: the sequence of
    mistakes is the same for every positive learning rate. Training runs all ``epochs`` (after an
    epoch without mistakes nothing changes any more), so ``mistakes_per_epoch`` has one entry per
    epoch. Computation is in float64.

    Args:
        points: ``(N, D)`` inputs.
        labels: ``(N,)`` class labels in {0, 1}.
        epochs: passes over the data.
        learning_rate: step size of each correction (positive).

    Returns:
        The trained :class:`Perceptron`: ``weights`` ``(D,)`` and ``bias`` ``()`` in float64, and
        ``mistakes_per_epoch``, the number of corrections made in each epoch.

    Raises:
        ValueError: shapes that do not match, labels outside {0, 1}, epochs < 1 or
            learning_rate <= 0.
    """
    if points.dim() != 2:
        raise ValueError(f"points must have shape (N, D), got {tuple(points.shape)}.")
    if labels.shape != (points.shape[0],):
        raise ValueError(f"labels must have shape ({points.shape[0]},) to match points, got {tuple(labels.shape)}.")
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError("labels must be 0 or 1.")
    if epochs < 1 or learning_rate <= 0:
        raise ValueError(f"need epochs >= 1 and learning_rate > 0, got {epochs} and {learning_rate}.")
    points = points.to(torch.float64)
    targets = labels.to(torch.float64) * 2 - 1  # (N,) in {-1, +1}
    weights = torch.zeros(points.shape[1], dtype=torch.float64, device=points.device)  # (D,)
    bias = torch.zeros((), dtype=torch.float64, device=points.device)  # ()
    mistakes_per_epoch = []
    for _ in range(epochs):
        mistakes = 0
        for point, target in zip(points, targets):  # point (D,), target ()
            activation = (weights * point).sum() + bias  # ()
            if target * activation <= 0:  # wrong side of the line, or on it
                weights = weights + learning_rate * target * point
                bias = bias + learning_rate * target
                mistakes += 1
        mistakes_per_epoch.append(mistakes)
    return Perceptron(weights=weights, bias=bias, mistakes_per_epoch=mistakes_per_epoch)


def _check_points(points: torch.Tensor, num_features: int) -> None:
    if points.dim() != 2 or points.shape[1] != num_features:
        raise ValueError(f"points must have shape (N, {num_features}), got {tuple(points.shape)}.")
