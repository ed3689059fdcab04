"""Losses for class-imbalanced segmentation: soft Dice and softmax focal loss.

Cross-entropy averages over pixels, so when the background covers most of an image it dominates the
loss. Two remedies, both taking logits ``(B, C, H, W)`` and class masks ``(B, H, W)``:

- **Dice loss** (Milletari, Navab & Ahmadi 2016, V-Net). The Dice coefficient of a predicted region
  ``P`` and a true region ``G`` is ``2 |P ∩ G| / (|P| + |G|)``. With soft probabilities ``p`` and a
  one-hot target ``g`` V-Net writes it as ``2 Σ p g / (Σ p² + Σ g²)``; we compute it per class over
  all (non-ignored) pixels of the batch, add ``smooth`` to numerator and denominator (so a class
  absent from the batch and not predicted scores 1, not 0 / 0), and return ``1 -`` its mean over the
  classes. Every class weighs the same whatever its area.
- **Focal loss** (Lin, Goyal, Girshick, He & Dollár 2017, RetinaNet) scales each pixel's
  cross-entropy by ``(1 - p_t)^γ``, where ``p_t`` is the probability of the true class: pixels the
  model already gets right (most of the background) contribute almost nothing. ``γ = 0`` gives
  cross-entropy back. RetinaNet used the sigmoid form; here it is the multi-class softmax form.

Pixels whose target is ``ignore_index`` (255) count in neither loss. Cross-entropy itself is
``F.cross_entropy(logits, target, ignore_index=255)``.

Taught in: book/04_segmentation/07_losses_and_metrics.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from companion.segmentation.data import IGNORE_INDEX


def _check_inputs(logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None) -> None:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.dim() < 2:
        raise ValueError("logits must be a floating-point tensor (B, C, H, W) of unnormalised scores, got "
                         f"{getattr(logits, 'dtype', type(logits).__name__)} "
                         f"{tuple(getattr(logits, 'shape', ()))}.")
    if not isinstance(target, torch.Tensor) or target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(f"target must be an integer class mask (B, H, W), got "
                         f"{getattr(target, 'dtype', type(target).__name__)}; convert it with target.long().")
    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"target must have shape {expected} for logits {tuple(logits.shape)}, got "
                         f"{tuple(target.shape)}; resize the logits to the mask's size "
                         f"(F.interpolate) or check the batch.")
    num_classes = logits.shape[1]
    valid = target if ignore_index is None else target[target != ignore_index]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= num_classes):
        raise ValueError(f"target has classes outside [0, {num_classes - 1}] (other than ignore_index="
                         f"{ignore_index}); the logits have {num_classes} channels.")


def _valid_and_clamped(target: torch.Tensor, ignore_index: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``valid`` pixels (bool, target's shape) and the target with ignored pixels set to class 0."""
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    return valid, torch.where(valid, target, torch.zeros_like(target)).long()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None = IGNORE_INDEX,
              smooth: float = 1.0) -> torch.Tensor:
    """Soft multi-class Dice loss, ``1 -`` the mean over classes of V-Net's Dice coefficient.

    For class ``c``, with ``p`` the softmax probabilities and ``g`` the one-hot target over the
    valid pixels of the whole batch:
    ``D_c = (2 Σ p_c g_c + smooth) / (Σ p_c² + Σ g_c² + smooth)``.

    Args:
        logits: ``(B, C, H, W)`` (or ``(B, C, *)``) unnormalised scores.
        target: ``(B, H, W)`` int64 classes in ``[0, C)`` or ``ignore_index``.
        ignore_index: target value of pixels to leave out (None: none).
        smooth: added to numerator and denominator; must be > 0 so that empty classes are defined.

    Returns:
        0-d tensor in ``[0, 1]``; 0 for a perfect, confident prediction.
    """
    _check_inputs(logits, target, ignore_index)
    if not smooth > 0:
        raise ValueError(f"smooth must be > 0, got {smooth}; it keeps classes absent from the batch defined.")
    num_classes = logits.shape[1]
    valid, target = _valid_and_clamped(target, ignore_index)
    probabilities = logits.softmax(dim=1).movedim(1, -1).reshape(-1, num_classes)  # (P, C)
    one_hot = F.one_hot(target.reshape(-1), num_classes).to(probabilities.dtype)  # (P, C)
    weight = valid.reshape(-1, 1).to(probabilities.dtype)  # (P, 1): 0 at ignored pixels
    probabilities, one_hot = probabilities * weight, one_hot * weight
    intersection = (probabilities * one_hot).sum(dim=0)  # (C,)
    denominator = (probabilities ** 2).sum(dim=0) + (one_hot ** 2).sum(dim=0)  # (C,)
    dice = (2 * intersection + smooth) / (denominator + smooth)  # (C,)
    return 1 - dice.mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               alpha: float | Sequence[float] | torch.Tensor | None = None,
               ignore_index: int | None = IGNORE_INDEX, reduction: str = "mean") -> torch.Tensor:
    """Multi-class softmax focal loss, ``-α_t (1 - p_t)^γ log p_t`` per pixel.

    Args:
        logits: ``(B, C, H, W)`` (or ``(B, C, *)``) unnormalised scores.
        target: ``(B, H, W)`` int64 classes in ``[0, C)`` or ``ignore_index``.
        gamma: focusing parameter ``γ >= 0``; 0 gives cross-entropy.
        alpha: class weights: None (all 1), a float (every class), or ``C`` values (``α_t`` is the
            weight of the pixel's true class).
        ignore_index: target value of pixels to leave out (None: none).
        reduction: ``"mean"`` (over valid pixels; not divided by the weights, unlike
            ``F.cross_entropy(weight=...)``), ``"sum"`` or ``"none"`` (``(B, H, W)``, 0 at ignored pixels).

    Returns:
        0-d tensor, or ``(B, H, W)`` for ``reduction="none"``. With ``gamma=0, alpha=None`` it equals
        ``F.cross_entropy(logits, target, ignore_index=ignore_index)``.
    """
    _check_inputs(logits, target, ignore_index)
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}.")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")
    num_classes = logits.shape[1]
    valid, target = _valid_and_clamped(target, ignore_index)
    log_p = logits.log_softmax(dim=1).gather(1, target.unsqueeze(1)).squeeze(1)  # (B, H, W) log p_t
    loss = -((1 - log_p.exp()) ** gamma) * log_p if gamma > 0 else -log_p  # (B, H, W)
    if alpha is not None:
        weights = torch.as_tensor(alpha, dtype=logits.dtype, device=logits.device)
        if weights.dim() == 0:
            weights = weights.expand(num_classes)
        if weights.shape != (num_classes,):
            raise ValueError(f"alpha must be a float or {num_classes} class weights, got shape "
                             f"{tuple(weights.shape)}.")
        loss = weights[target] * loss  # (B, H, W)
    loss = torch.where(valid, loss, torch.zeros_like(loss))  # (B, H, W)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / valid.sum().clamp(min=1)
