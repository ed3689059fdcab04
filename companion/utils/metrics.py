"""Classification metrics computed from logits and integer labels."""

from __future__ import annotations

import torch


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of rows whose arg-max logit is the target class.

    Args:
        logits: ``(N, C)`` scores.
        targets: ``(N,)`` integer classes.

    Returns:
        Accuracy in ``[0, 1]``.
    """
    if logits.dim() != 2 or targets.dim() != 1 or logits.shape[0] != targets.shape[0]:
        raise ValueError(f"expected logits (N, C) and targets (N,), got {tuple(logits.shape)} and {tuple(targets.shape)}")
    return (logits.argmax(dim=1) == targets).float().mean().item()


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Count how often each true class is predicted as each class.

    Args:
        predictions: ``(N,)`` predicted classes.
        targets: ``(N,)`` true classes.
        num_classes: K.

    Returns:
        ``(K, K)`` int64 counts; entry ``[i, j]`` is the number of examples of class i predicted as j.
    """
    if predictions.shape != targets.shape or predictions.dim() != 1:
        raise ValueError(f"predictions and targets must both be (N,), got {tuple(predictions.shape)} and {tuple(targets.shape)}")
    for name, values in (("predictions", predictions), ("targets", targets)):
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= num_classes):
            raise ValueError(f"{name} contain classes outside [0, {num_classes - 1}]; check num_classes")
    flat = targets.long() * num_classes + predictions.long()  # (N,) index of cell [target, prediction]
    counts = torch.bincount(flat, minlength=num_classes * num_classes)  # (K*K,)
    return counts.reshape(num_classes, num_classes)
