"""A linear probe: multinomial logistic regression on frozen features, trained to convergence.

A probe judges features, so it must not be limited by its own training: a few hundred noisy SGD
steps on unscaled features measure the optimizer, not the representation. ``fit_linear_probe``
standardises the features, minimises the convex L2-regularised cross-entropy with full-batch L-BFGS
(the objective scikit-learn's ``LogisticRegression`` minimises, with the same ``C``), and folds the
standardisation into the returned ``nn.Linear``, which therefore applies to raw features.

Taught in: book/02_cnn/10_transfer_learning.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                     inverse_regularization: float = 1.0, max_iter: int = 500,
                     tolerance: float = 1e-7) -> nn.Linear:
    """Fit ``softmax(W x + b)`` to ``(features, labels)`` by L-BFGS.

    Minimises ``sum_i CE(W z_i + b, y_i) + ||W||^2 / (2 C)`` over standardised features ``z``
    (the bias is not penalised), i.e. scikit-learn's ``LogisticRegression(C=C)`` on standardised
    features.

    Args:
        features: ``(N, D)`` frozen features (computed once, without gradients).
        labels: ``(N,)`` integer class indices in ``[0, num_classes)``.
        num_classes: number of classes ``K``.
        inverse_regularization: ``C``; larger means weaker L2 regularisation.
        max_iter: L-BFGS iterations at most.
        tolerance: stop when the gradient or the step is smaller than this.

    Returns:
        An ``nn.Linear(D, K)`` on the same device and dtype as ``features``, applying to raw
        (unstandardised) features.

    Raises:
        ValueError: shapes that do not match, labels out of range, or ``C <= 0``.
    """
    if features.dim() != 2 or labels.dim() != 1 or features.shape[0] != labels.shape[0]:
        raise ValueError(f"features must be (N, D) and labels (N,), got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}; flatten the features and pass one label per row.")
    if features.shape[0] == 0:
        raise ValueError("features is empty; the probe needs at least one labelled example.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got values from {int(labels.min())} "
                         f"to {int(labels.max())}; remap them or raise num_classes.")
    if inverse_regularization <= 0:
        raise ValueError(f"inverse_regularization={inverse_regularization} must be positive.")
    features = features.detach()
    mean = features.mean(dim=0)  # (D,)
    scale = features.std(dim=0, unbiased=False).clamp_min(1e-6)  # (D,); constant features stay 0
    standardized = (features - mean) / scale  # (N, D)
    weight = torch.zeros(num_classes, features.shape[1], device=features.device, dtype=features.dtype,
                         requires_grad=True)  # (K, D)
    bias = torch.zeros(num_classes, device=features.device, dtype=features.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, tolerance_grad=tolerance,
                                  tolerance_change=tolerance * 1e-2, history_size=20,
                                  line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        logits = standardized @ weight.T + bias  # (N, K)
        loss = F.cross_entropy(logits, labels, reduction="sum")
        loss = loss + weight.square().sum() / (2 * inverse_regularization)
        loss.backward()
        return loss

    optimizer.step(objective)
    probe = nn.Linear(features.shape[1], num_classes, device=features.device, dtype=features.dtype)
    with torch.no_grad():
        # W z + b = W (x - mean) / scale + b = (W / scale) x + (b - W (mean / scale))
        probe.weight.copy_(weight / scale)  # (K, D) / (D,)
        probe.bias.copy_(bias - weight @ (mean / scale))  # (K,)
    return probe
