"""Regularization: weight penalties, decoupled weight decay, early stopping and data augmentation.

- ``l1_penalty`` (sum of ``|w|``) and ``l2_penalty`` (half the sum of ``w^2``), added to the loss
  times a coefficient; ``soft_threshold``, the exact minimiser behind L1's zeros.
- ``decoupled_weight_decay_``: shrink weights directly, ``w <- (1 - lr * weight_decay) w``, as
  ``torch.optim.AdamW`` does before its Adam step (Loshchilov and Hutter, 2019).
- ``EarlyStopping``: track the best validation metric, stop after ``patience`` epochs without
  improvement, keep (and restore) the best weights.
- ``random_horizontal_flip``, ``shift_images``, ``random_shift`` and ``RandomFlipAndShift``: label-
  preserving changes of a batch of images ``(B, C, H, W)``, drawn independently per image.

Dropout has its own file, ``companion/foundations/dropout.py``.

Taught in: book/01_foundations/06_regularization.ipynb.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn


def weight_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters usually regularized: weight matrices and kernels (``dim >= 2``), not biases.

    Biases and normalization scales shift or scale activations; shrinking them towards zero does
    not make the function smoother, so penalties and weight decay conventionally skip them.

    Args:
        model: any module.

    Returns:
        Its trainable parameters with at least two dimensions, in ``model.parameters()`` order.
    """
    return [parameter for parameter in model.parameters() if parameter.requires_grad and parameter.dim() >= 2]


def _nonempty(parameters: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The parameters as a list; an empty one is an error (a penalty over nothing is a bug)."""
    tensors = list(parameters)
    if not tensors:
        raise ValueError("no parameters to penalize; pass weight_parameters(model) or model.parameters().")
    return tensors


def l1_penalty(parameters: Iterable[torch.Tensor]) -> torch.Tensor:
    """``sum |w|`` over all elements of all tensors (the lasso penalty).

    Its (sub)gradient is ``sign(w)``: a constant-size push towards zero, however small ``w`` is.

    Args:
        parameters: tensors, e.g. :func:`weight_parameters`.

    Returns:
        A ``()`` tensor on the parameters' device (differentiable).

    Raises:
        ValueError: ``parameters`` is empty.
    """
    tensors = _nonempty(parameters)
    return torch.stack([tensor.abs().sum() for tensor in tensors]).sum()  # (n,) -> ()


def l2_penalty(parameters: Iterable[torch.Tensor]) -> torch.Tensor:
    """``(1/2) sum w^2`` over all elements of all tensors (ridge, Tikhonov).

    The factor 1/2 makes the gradient ``w``: ``loss + weight_decay * l2_penalty(params)`` has the
    gradient that ``torch.optim.SGD``/``Adam`` with ``weight_decay=...`` use. The push towards zero is
    proportional to ``w``, so it fades as ``w`` shrinks.

    Args:
        parameters: tensors, e.g. :func:`weight_parameters`.

    Returns:
        A ``()`` tensor on the parameters' device (differentiable).

    Raises:
        ValueError: ``parameters`` is empty.
    """
    tensors = _nonempty(parameters)
    return 0.5 * torch.stack([tensor.pow(2).sum() for tensor in tensors]).sum()  # (n,) -> ()


def soft_threshold(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """``sign(x) * max(|x| - threshold, 0)``: the minimiser of ``(w - x)^2 / 2 + threshold * |w|``.

    Every ``|x| <= threshold`` maps to exactly 0; this is where the L1 penalty's zeros come from.
    Equals ``torch.nn.functional.softshrink``.

    Args:
        x: any shape.
        threshold: non-negative.

    Returns:
        A tensor shaped like ``x``.

    Raises:
        ValueError: ``threshold`` is negative.
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}.")
    return torch.sign(x) * (x.abs() - threshold).clamp(min=0)


@torch.no_grad()
def decoupled_weight_decay_(parameters: Iterable[torch.Tensor], lr: float, weight_decay: float) -> None:
    """Shrink every tensor in place, ``w <- (1 - lr * weight_decay) w``, outside the gradient.

    Called before an optimizer step (with the optimizer's own ``weight_decay=0``), this is what
    ``torch.optim.AdamW`` does: the decay does not pass through Adam's moment estimates, so every
    weight shrinks by the same factor whatever its gradient history. With plain SGD it gives the
    same step as an L2 penalty with coefficient ``weight_decay``.

    Args:
        parameters: the tensors to decay.
        lr: the learning rate of the step.
        weight_decay: the decay coefficient (PyTorch's convention: multiplied by ``lr``).

    Raises:
        ValueError: ``lr`` or ``weight_decay`` is negative.
    """
    if lr < 0 or weight_decay < 0:
        raise ValueError(f"lr and weight_decay must be >= 0, got lr={lr}, weight_decay={weight_decay}.")
    for tensor in parameters:
        tensor.mul_(1.0 - lr * weight_decay)


class EarlyStopping:
    """Watch a validation metric once per epoch; stop after ``patience`` epochs without improvement.

    Call :meth:`step` after every epoch with the metric (and the model, to keep a copy of the best
    weights). Once it has returned True the decision is final: later calls change nothing and
    return True again. :meth:`restore` loads the best weights.

    Args:
        patience: epochs without improvement to wait before stopping (0 stops at the first one).
        mode: ``"max"`` for a metric to maximise (accuracy), ``"min"`` for one to minimise (loss).
        min_delta: an improvement must beat the best value by more than this.

    Attributes:
        best_value: the best metric so far (None before the first step).
        best_epoch: the 1-based epoch where it was reached (0 before the first step).
        epochs_without_improvement: epochs since the best one.
        stopped_epoch: the epoch at which stopping was decided (None while training should go on).
        best_state: a copy of the model's ``state_dict`` at the best epoch (when models are passed).
    """

    def __init__(self, patience: int = 5, mode: str = "max", min_delta: float = 0.0) -> None:
        if patience < 0:
            raise ValueError(f"patience must be >= 0 epochs, got {patience}.")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' (e.g. a loss) or 'max' (e.g. an accuracy), got {mode!r}.")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}.")
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.best_value: float | None = None
        self.best_epoch = 0
        self.epochs_seen = 0
        self.epochs_without_improvement = 0
        self.stopped_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None

    @property
    def should_stop(self) -> bool:
        """Whether stopping has been decided."""
        return self.stopped_epoch is not None

    def _improves(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best_value is None:
            return True
        if self.mode == "max":
            return value > self.best_value + self.min_delta
        return value < self.best_value - self.min_delta

    def step(self, value: float, model: nn.Module | None = None) -> bool:
        """Record one epoch's metric and return whether to stop training now.

        Args:
            value: the validation metric of the epoch that just ended.
            model: when given, its weights are copied whenever ``value`` is a new best.

        Returns:
            True when ``patience`` epochs have passed without improvement.
        """
        if self.should_stop:
            return True
        self.epochs_seen += 1
        if self._improves(float(value)):
            self.best_value, self.best_epoch = float(value), self.epochs_seen
            self.epochs_without_improvement = 0
            if model is not None:
                self.best_state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        else:
            self.epochs_without_improvement += 1
            if self.epochs_without_improvement > self.patience:
                self.stopped_epoch = self.epochs_seen
        return self.should_stop

    def restore(self, model: nn.Module) -> nn.Module:
        """Load the best weights into ``model`` (in place) and return it.

        Raises:
            ValueError: no weights were kept (``step`` was never given a model).
        """
        if self.best_state is None:
            raise ValueError("no weights to restore: pass the model to step(value, model) every epoch.")
        model.load_state_dict(copy.deepcopy(self.best_state))
        return model


def _check_images(images: torch.Tensor) -> None:
    if images.dim() != 4:
        raise ValueError(f"expected a batch of images (B, C, H, W), got shape {tuple(images.shape)}; "
                         "add the batch dimension with images.unsqueeze(0).")


def random_horizontal_flip(images: torch.Tensor, probability: float = 0.5,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability ``probability``, independently per image.

    Args:
        images: ``(B, C, H, W)``.
        probability: in ``[0, 1]``.
        generator: CPU random generator for the decisions (None: the default one).

    Returns:
        ``(B, C, H, W)``.

    Raises:
        ValueError: the batch is not 4-D or ``probability`` is outside ``[0, 1]``.
    """
    _check_images(images)
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability}.")
    flip = torch.rand(images.shape[0], generator=generator) < probability  # (B,)
    flip = flip.to(images.device)[:, None, None, None]  # (B, 1, 1, 1)
    return torch.where(flip, images.flip(-1), images)


def shift_images(images: torch.Tensor, offsets: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """Translate each image by whole pixels; what moves in from outside is ``fill``.

    Args:
        images: ``(B, C, H, W)``.
        offsets: ``(B, 2)`` integers ``(dy, dx)``: image ``b`` moves ``dy`` pixels down and ``dx``
            pixels right (negative values move it up / left).
        fill: the value of uncovered pixels (0: black background for images in ``[0, 1]``).

    Returns:
        ``(B, C, H, W)``.

    Raises:
        ValueError: the shapes do not fit.
    """
    _check_images(images)
    batch, _, height, width = images.shape
    if offsets.shape != (batch, 2):
        raise ValueError(f"offsets must be (B, 2) = ({batch}, 2) integer (dy, dx) pairs, got {tuple(offsets.shape)}.")
    offsets = offsets.to(device=images.device, dtype=torch.long)
    margin = int(offsets.abs().max()) if offsets.numel() else 0
    if margin == 0:
        return images
    padded = F.pad(images, (margin, margin, margin, margin), value=fill)  # (B, C, H + 2m, W + 2m)
    rows = torch.arange(height, device=images.device) + margin - offsets[:, :1]  # (B, H): source rows
    cols = torch.arange(width, device=images.device) + margin - offsets[:, 1:]  # (B, W): source columns
    index = torch.arange(batch, device=images.device)[:, None, None]  # (B, 1, 1)
    shifted = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return shifted.permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)


def random_shift(images: torch.Tensor, max_shift: int = 2, fill: float = 0.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image by a random ``(dy, dx)``, each uniform in ``[-max_shift, max_shift]``.

    Args:
        images: ``(B, C, H, W)``.
        max_shift: largest shift in pixels, ``>= 0``.
        fill: the value of uncovered pixels.
        generator: CPU random generator for the offsets (None: the default one).

    Returns:
        ``(B, C, H, W)``.

    Raises:
        ValueError: the batch is not 4-D or ``max_shift`` is negative.
    """
    _check_images(images)
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0 pixels, got {max_shift}.")
    offsets = torch.randint(-max_shift, max_shift + 1, (images.shape[0], 2), generator=generator)  # (B, 2)
    return shift_images(images, offsets, fill)


class RandomFlipAndShift:
    """A batch transform for ``ArrayDataset.transform``: random horizontal flip, then random shift.

    Every image of every batch gets its own draw from the transform's generator, so a run is
    reproducible from ``seed`` (with a fixed batch order).

    Args:
        max_shift: largest translation in pixels along each axis.
        flip_probability: probability of mirroring an image left-right.
        fill: value of the pixels uncovered by the shift (apply the transform before standardizing,
            so that 0 is the black background).
        seed: seed of the transform's own CPU generator.
    """

    def __init__(self, max_shift: int = 2, flip_probability: float = 0.5, fill: float = 0.0, seed: int = 0) -> None:
        if max_shift < 0:
            raise ValueError(f"max_shift must be >= 0 pixels, got {max_shift}.")
        if not 0.0 <= flip_probability <= 1.0:
            raise ValueError(f"flip_probability must be in [0, 1], got {flip_probability}.")
        self.max_shift, self.flip_probability, self.fill = max_shift, flip_probability, fill
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``."""
        images = random_horizontal_flip(images, self.flip_probability, self.generator)
        return random_shift(images, self.max_shift, self.fill, self.generator)

    def __repr__(self) -> str:
        return (f"RandomFlipAndShift(max_shift={self.max_shift}, flip_probability={self.flip_probability}, "
                f"fill={self.fill})")
