"""How a batch from a DataLoader meets the model: moving it, calling the model, checking the shapes.

A batch is ``(inputs, targets)``. ``inputs`` is a tensor (the model is called as ``model(inputs)``),
a tuple or list of tensors (``model(*inputs)``) or a dict of tensors (``model(**inputs)``).

Taught in: book/01_foundations/02_mlp_fashion_mnist.ipynb (the training loop).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel``/``DataParallel`` and ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod  # torch.compile's OptimizedModule
        else:
            return model


def model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter or buffer (None for a model without tensors)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return None


def split_batch(batch: Any) -> tuple[Any, torch.Tensor]:
    """``(inputs, targets)`` from a batch, with a clear error for other layouts."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    kind = f"a {type(batch).__name__} of length {len(batch)}" if isinstance(batch, (tuple, list)) \
        else f"a {type(batch).__name__}"
    raise TypeError(f"the engine expects every batch to be a pair (inputs, targets), but the loader "
                    f"gave {kind}; wrap the dataset so that it returns (inputs, targets).")


def to_device(data: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move a tensor, or the tensors in a tuple/list/dict, to ``device``.

    Args:
        data: a tensor or a (nested) tuple, list or dict of tensors; other values pass unchanged.
        device: where to move them.
        channels_last: put 4-D tensors ``(B, C, H, W)`` in channels_last memory format.

    Returns:
        The same structure with tensors on ``device``.
    """
    if isinstance(data, torch.Tensor):
        non_blocking = device.type == "cuda"
        if channels_last and data.dim() == 4:
            return data.to(device, non_blocking=non_blocking, memory_format=torch.channels_last)
        return data.to(device, non_blocking=non_blocking)
    if isinstance(data, (tuple, list)):
        return type(data)(to_device(item, device, channels_last) for item in data)
    if isinstance(data, dict):
        return {key: to_device(value, device, channels_last) for key, value in data.items()}
    return data


def call_model(model: nn.Module, inputs: Any) -> Any:
    """``model(inputs)``, ``model(*inputs)`` or ``model(**inputs)`` depending on the type of inputs."""
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(inputs)


def batch_size(targets: torch.Tensor) -> int:
    """Examples in a batch: the first dimension of the targets."""
    return int(targets.shape[0]) if targets.dim() > 0 else 1


def is_classification(outputs: Any, targets: Any) -> bool:
    """True when outputs are logits ``(B, C)`` and targets integer class indices ``(B,)``."""
    return (isinstance(outputs, torch.Tensor) and isinstance(targets, torch.Tensor)
            and outputs.dim() == 2 and targets.dim() == 1
            and not targets.dtype.is_floating_point and not targets.dtype.is_complex
            and targets.dtype != torch.bool)


def count_correct(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Number of rows whose highest logit is the target class (a 0-d tensor on the outputs' device)."""
    return (outputs.argmax(dim=1) == targets).sum()  # (B, C) -> (B,) -> ()


def check_outputs(outputs: Any, targets: Any,
                  loss_fn: Callable[..., torch.Tensor] = F.cross_entropy) -> None:
    """Raise a ``ValueError`` that names the fix when outputs and targets cannot go together.

    Integer targets ``(B,)`` are class indices: outputs must be logits ``(B, C)`` with
    ``C > targets.max()``. With cross-entropy, integer targets ``(B, d1, ...)`` (segmentation) need
    outputs ``(B, C, d1, ...)``. Otherwise outputs and targets with the same number of dimensions
    must agree on the batch size. Layouts a custom loss handles (CTC's ``(T, B, C)``) are left alone.

    Args:
        outputs: what the model returned for one batch.
        targets: the batch's targets.
        loss_fn: the loss in use.
    """
    if not isinstance(outputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        return
    out_shape, target_shape = tuple(outputs.shape), tuple(targets.shape)
    integer_targets = not (targets.dtype.is_floating_point or targets.dtype.is_complex
                           or targets.dtype == torch.bool)
    cross_entropy = loss_fn is F.cross_entropy or isinstance(loss_fn, nn.CrossEntropyLoss)
    # nn.CrossEntropyLoss(ignore_index=255) skips the 255s (PASCAL VOC's outlines): no class to check.
    ignore_index = loss_fn.ignore_index if isinstance(loss_fn, nn.CrossEntropyLoss) else -100
    if integer_targets and targets.dim() == 1:
        if outputs.dim() != 2:
            hint = ("flatten the features before the last Linear layer (nn.Flatten())"
                    if outputs.dim() > 2 else "the last layer must output one logit per class")
            raise ValueError(f"the model outputs shape {out_shape} but the labels have shape "
                             f"{target_shape}: for classification the outputs must be logits "
                             f"(batch, classes); {hint}.")
        _check_batch(out_shape, target_shape)
        _check_classes(outputs.shape[1], targets, ignore_index)
        return
    if integer_targets and cross_entropy and targets.dim() >= 2:
        if outputs.dim() != targets.dim() + 1 or out_shape[2:] != target_shape[1:]:
            raise ValueError(f"the model outputs shape {out_shape} but the labels have shape "
                             f"{target_shape}: per-position class labels (B, ...) need logits "
                             f"(B, classes, ...) with the same spatial size, here "
                             f"{(target_shape[0], 'classes', *target_shape[1:])}.")
        _check_batch(out_shape, target_shape)
        _check_classes(outputs.shape[1], targets, ignore_index)
        return
    if outputs.dim() == targets.dim() or cross_entropy:
        _check_batch(out_shape, target_shape)


def _check_batch(out_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> None:
    if out_shape[0] != target_shape[0]:
        raise ValueError(f"the model outputs shape {out_shape} for a batch whose labels have shape "
                         f"{target_shape}: {out_shape[0]} outputs for {target_shape[0]} labels. The "
                         "model must keep the batch dimension first; check for a reshape or view "
                         "that mixes it with other dimensions (use x.flatten(1)).")


def _check_classes(num_classes: int, targets: torch.Tensor, ignore_index: int = -100) -> None:
    """Labels must be classes ``0..num_classes-1`` or the loss's ``ignore_index`` (skipped)."""
    counted = targets[targets != ignore_index]
    if counted.numel() == 0:
        return
    low, high = int(counted.min()), int(counted.max())
    if low < 0:
        raise ValueError(f"the labels contain {low}: class labels must be integers in "
                         f"[0, {num_classes}) (or {ignore_index} for positions to ignore).")
    if high >= num_classes:
        hint = (" Labels such as 255 that mark pixels to skip need a loss that skips them: "
                f"loss_fn=nn.CrossEntropyLoss(ignore_index={high})." if high == 255 else "")
        raise ValueError(f"the model outputs {num_classes} classes but the labels go up to {high}: "
                         f"build the model with num_classes={high + 1} (or check the labels).{hint}")
