"""Label-smoothed cross-entropy (Szegedy et al., 2016), with class weights and ignored labels.

Cross-entropy against a one-hot target keeps pushing the true class's logit away from the others,
even when the prediction is already right: the loss only reaches zero when the softmax probability
is exactly 1, i.e. when the logit gap is infinite. Label smoothing replaces the one-hot target by

    q_k = (1 - eps) * [k == y] + eps / K,

so the loss has a finite minimum (a finite logit gap) and the network is discouraged from becoming
over-confident. For a class index ``y`` and log-probabilities ``log p`` the loss splits into two
terms:

    loss = (1 - eps) * (-log p_y) + (eps / K) * sum_k (-log p_k).

With class weights ``w`` PyTorch weights the first term by ``w_y`` and the second term's classes by
``w_k``, and the "mean" reduction divides both by the summed weight ``sum_i w_{y_i}`` of the
examples that are not ignored. :func:`label_smoothing_cross_entropy` writes that definition out and
equals ``torch.nn.functional.cross_entropy(..., weight=w, label_smoothing=eps)``, checked in
``tests/cnn/test_label_smoothing.py``. (``companion.foundations.losses.cross_entropy`` has the
unweighted case.)

Taught in: book/02_cnn/09_training_recipe.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn

from companion.foundations.losses import smooth_labels

REDUCTIONS = ("mean", "sum", "none")


def smoothed_targets(target: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """The label-smoothed target distribution for class indices.

    Args:
        target: ``(B,)`` int64 class indices in ``[0, num_classes)``.
        num_classes: ``K``.
        smoothing: ``eps`` in ``[0, 1]``.

    Returns:
        ``(B, K)`` float32 rows ``(1 - eps) one_hot(y) + eps / K``, each summing to 1.

    Raises:
        ValueError: ``smoothing`` outside ``[0, 1]`` or a label outside ``[0, num_classes)``.
    """
    return smooth_labels(target, num_classes, smoothing)  # Part 1's definition, (B, K) float32


def label_smoothing_cross_entropy(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.1, *,
                                  weight: torch.Tensor | None = None, reduction: str = "mean",
                                  ignore_index: int = -100) -> torch.Tensor:
    """Cross-entropy of ``softmax(logits)`` against label-smoothed targets, written out.

    Args:
        logits: ``(B, K)`` unnormalised scores (any float dtype; half precision is upcast to float32,
            as autocast does for ``F.cross_entropy``).
        target: ``(B,)`` int64 class indices; entries equal to ``ignore_index`` contribute nothing.
        smoothing: ``eps`` in ``[0, 1]``; 0 gives the ordinary cross-entropy.
        weight: optional ``(K,)`` per-class weights.
        reduction: ``"mean"`` (divided by the summed weight of the kept examples, their count
            without weights), ``"sum"`` or ``"none"``.
        ignore_index: the label value to skip (padding, unlabelled examples).

    Returns:
        A ``()`` float tensor, or ``(B,)`` per-example losses for ``"none"`` (0 where ignored).

    Raises:
        ValueError: bad ``smoothing``, ``reduction``, shapes or labels, with the fix in the message.
    """
    _check_smoothing(smoothing)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, K), got shape {tuple(logits.shape)}; flatten extra "
                         "dimensions into the batch first.")
    if target.shape != logits.shape[:1] or target.dtype.is_floating_point:
        raise ValueError(f"target must be (B,) = {tuple(logits.shape[:1])} int64 class indices, got "
                         f"{target.dtype} of shape {tuple(target.shape)}.")
    num_classes = logits.shape[1]
    if weight is not None and weight.shape != (num_classes,):
        raise ValueError(f"weight must have one entry per class, shape ({num_classes},), got "
                         f"{tuple(weight.shape)}.")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    keep = target != ignore_index  # (B,)
    safe_target = torch.where(keep, target, torch.zeros_like(target))  # (B,): ignored -> class 0
    # The range check reads values back from the tensor, which would synchronise a GPU every step;
    # it runs on CPU only (on a GPU, gather's own index check still stops a bad label).
    if safe_target.device.type == "cpu" and safe_target.numel() and (
            int(safe_target.min()) < 0 or int(safe_target.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}) or equal ignore_index={ignore_index}.")

    log_probs = torch.log_softmax(logits, dim=1)  # (B, K)
    class_weight = (weight.to(log_probs) if weight is not None
                    else torch.ones(num_classes, dtype=log_probs.dtype, device=log_probs.device))  # (K,)
    example_weight = class_weight[safe_target] * keep  # (B,): w_y, 0 where ignored
    true_class = -log_probs.gather(1, safe_target.unsqueeze(1)).squeeze(1)  # (B,): -log p_y
    all_classes = -(log_probs * class_weight).sum(dim=1) * keep  # (B,): sum_k -w_k log p_k
    losses = ((1.0 - smoothing) * example_weight * true_class
              + (smoothing / num_classes) * all_classes)  # (B,)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / example_weight.sum()  # nan when every label is ignored, as in PyTorch


class LabelSmoothingCrossEntropy(nn.Module):
    """:func:`label_smoothing_cross_entropy` as a module, a ``loss_fn(logits, targets)`` for ``fit``.

    Args:
        smoothing: ``eps`` in ``[0, 1]`` (Szegedy et al. used 0.1 on ImageNet).
        weight: optional ``(K,)`` class weights, kept as a buffer (moves with ``.to(device)``).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        ignore_index: the label value to skip.
    """

    def __init__(self, smoothing: float = 0.1, *, weight: torch.Tensor | None = None,
                 reduction: str = "mean", ignore_index: int = -100) -> None:
        super().__init__()
        _check_smoothing(smoothing)
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")
        self.smoothing, self.reduction, self.ignore_index = smoothing, reduction, ignore_index
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(logits.device)
        return label_smoothing_cross_entropy(logits, target, self.smoothing, weight=weight,
                                             reduction=self.reduction, ignore_index=self.ignore_index)

    def extra_repr(self) -> str:
        return f"smoothing={self.smoothing}, reduction={self.reduction!r}"


def _check_smoothing(smoothing: float) -> None:
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing must be in [0, 1], got {smoothing}; 0.1 is the usual value.")
