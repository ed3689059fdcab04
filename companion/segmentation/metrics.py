"""Segmentation metrics from one confusion matrix: per-class IoU, mean IoU and pixel accuracy.

A semantic segmenter labels every pixel, so it is scored like a classifier whose examples are the
pixels: count, for every true class (row) and predicted class (column), how many pixels fall in that
cell. Everything else is read off that ``(C, C)`` matrix ``M``:

- pixel accuracy, the share of pixels on the diagonal: ``trace(M) / sum(M)``;
- the intersection over union of class ``c``, the overlap of the predicted and the true region of
  ``c`` divided by their union: ``IoU_c = M[c, c] / (sum_j M[c, j] + sum_i M[i, c] - M[c, c])``;
- mean IoU (mIoU), the average of ``IoU_c`` over the classes, the PASCAL VOC segmentation measure
  (Everingham et al. 2010).

Conventions, fixed for the whole of Part 4:

- Pixels whose target is ``ignore_index`` (255, PASCAL VOC's "void" borders) are left out of the
  matrix altogether, whatever was predicted there.
- ``mean_iou`` averages over the classes *present*: those that occur in the target or in the
  prediction (``M[c, :].sum() + M[:, c].sum() > 0``), the background included. A class absent from
  both has an undefined IoU (0 / 0) and is skipped rather than counted as 0 or 1. torchmetrics'
  ``MulticlassJaccardIndex(average="macro")`` (1.9) skips the same classes, so the two agree.
- Accumulate one matrix over a whole split and compute the metrics once (``evaluate_segmentation``):
  averaging per-image mIoUs gives a different, noisier number.

Taught in: book/04_segmentation/01_semantic_segmentation.ipynb (and 07_losses_and_metrics.ipynb).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from companion.segmentation.data import IGNORE_INDEX


def _check_labels(values: torch.Tensor, name: str) -> None:
    if not isinstance(values, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of class indices, got {type(values).__name__}; "
                         f"convert it with torch.as_tensor({name}).")
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices, got {values.dtype}; for logits "
                         f"(B, C, H, W) pass logits.argmax(dim=1).")


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """Count pixels by (true class, predicted class).

    Args:
        pred: predicted classes, any shape (e.g. ``(B, H, W)``), integers in ``[0, num_classes)``.
        target: true classes, the same shape, integers in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: ``C``, the background included.
        ignore_index: target value of pixels to leave out (None: every pixel counts).

    Returns:
        ``(C, C)`` int64 counts on ``target``'s device; entry ``[i, j]`` is the number of pixels of
        true class ``i`` predicted as ``j``.

    Raises:
        ValueError: mismatched shapes, non-integer inputs, or classes outside the range.
    """
    _check_labels(pred, "pred")
    _check_labels(target, "target")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}; for logits (B, C, H, W) pass logits.argmax(dim=1).")
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        raise ValueError(f"ignore_index={ignore_index} is one of the {num_classes} classes; use a value "
                         f"outside [0, {num_classes - 1}] (255 by convention) or None.")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()  # (P,), (P,)
    if ignore_index is not None:
        keep = target != ignore_index  # (P,)
        pred, target = pred[keep], target[keep]
    for name, values in (("pred", pred), ("target", target)):
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= num_classes):
            extra = f" (or {ignore_index}, ignored)" if name == "target" and ignore_index is not None else ""
            raise ValueError(f"{name} has classes outside [0, {num_classes - 1}]{extra}: found "
                             f"{int(values.min())}..{int(values.max())}; check num_classes.")
    cell = target * num_classes + pred  # (P,) index of cell [target, pred] in the flattened matrix
    counts = torch.bincount(cell, minlength=num_classes * num_classes)  # (C * C,)
    return counts.reshape(num_classes, num_classes)  # (C, C)


def _check_confusion(confusion: torch.Tensor) -> torch.Tensor:
    if not isinstance(confusion, torch.Tensor) or confusion.dim() != 2 \
            or confusion.shape[0] != confusion.shape[1]:
        shape = tuple(confusion.shape) if isinstance(confusion, torch.Tensor) else type(confusion).__name__
        raise ValueError(f"confusion must be a square (C, C) tensor from confusion_matrix(), got {shape}.")
    if (confusion < 0).any():
        raise ValueError("confusion has negative counts; build it with confusion_matrix().")
    if confusion.sum() == 0:
        raise ValueError("confusion counts no pixels (empty input or every target ignored); "
                         "there is nothing to measure.")
    return confusion.double()


def per_class_iou(confusion: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every class.

    Args:
        confusion: ``(C, C)`` counts, rows = target, columns = prediction.

    Returns:
        ``(C,)`` float64 IoU in ``[0, 1]``; ``nan`` for a class absent from both target and prediction.
    """
    counts = _check_confusion(confusion)
    intersection = counts.diag()  # (C,)
    union = counts.sum(dim=1) + counts.sum(dim=0) - intersection  # (C,) target + predicted - both
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.full_like(union, float("nan")))


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean of the per-class IoU over the classes present in the target or the prediction.

    The background counts as a class. Classes absent from both are skipped (their IoU is 0 / 0),
    as in torchmetrics' ``MulticlassJaccardIndex(average="macro")``.

    Args:
        confusion: ``(C, C)`` counts, rows = target, columns = prediction.

    Returns:
        mIoU in ``[0, 1]``.
    """
    iou = per_class_iou(confusion)  # (C,)
    return float(iou[~iou.isnan()].mean())


def pixel_accuracy(confusion: torch.Tensor) -> float:
    """Share of (non-ignored) pixels whose predicted class is the true class.

    Args:
        confusion: ``(C, C)`` counts, rows = target, columns = prediction.

    Returns:
        Accuracy in ``[0, 1]``.
    """
    counts = _check_confusion(confusion)
    return float(counts.diag().sum() / counts.sum())


def evaluate_segmentation(model: nn.Module, loader: Iterable, num_classes: int,
                          device: str | torch.device = "cpu",
                          ignore_index: int | None = IGNORE_INDEX) -> dict[str, Any]:
    """Score a segmenter on a whole split with one confusion matrix.

    The model runs in ``eval()`` mode under ``torch.no_grad()`` and is put back in the mode it was in.

    Args:
        model: ``model(images (B, 3, H, W)) -> logits (B, C, H, W)``; moved to ``device``.
        loader: yields ``(images (B, 3, H, W), masks (B, H, W))``.
        num_classes: ``C``, the background included.
        device: where to run the model.
        ignore_index: mask value of pixels to leave out.

    Returns:
        ``{"miou": float, "pixel_accuracy": float, "per_class_iou": list of C floats (nan for absent
        classes), "confusion": (C, C) int64 tensor on the CPU}``.
    """
    device = torch.device(device)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    was_training = model.training
    model.to(device)
    model.eval()
    try:
        with torch.no_grad():
            for images, masks in loader:
                logits = model(images.to(device))  # (B, C, H, W)
                if logits.dim() != 4 or logits.shape[1] != num_classes \
                        or logits.shape[2:] != masks.shape[1:]:
                    raise ValueError(f"the model must return logits (B, {num_classes}, H, W) at the masks' "
                                     f"size {tuple(masks.shape[1:])}, got {tuple(logits.shape)}.")
                confusion += confusion_matrix(logits.argmax(dim=1).cpu(), masks.cpu(), num_classes,
                                              ignore_index)
    finally:
        model.train(was_training)
    if confusion.sum() == 0:
        raise ValueError("the loader gave no (non-ignored) pixels; there is nothing to evaluate.")
    return {"miou": mean_iou(confusion), "pixel_accuracy": pixel_accuracy(confusion),
            "per_class_iou": per_class_iou(confusion).tolist(), "confusion": confusion}
