"""Measuring a model without training it: the loss and accuracy on a loader, and its predictions.

Both run under ``torch.inference_mode()`` with the model in ``eval()`` mode (dropout off, batch norm
using its running statistics) and put the model back in the mode it was in.

Taught in: book/01_foundations/02_mlp_fashion_mnist.ipynb (the training loop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

from companion.engine.batches import (batch_size, call_model, check_outputs, count_correct,
                                      is_classification, model_device, split_batch, to_device)
from companion.utils.amp import autocast
from companion.utils.device import get_device


def evaluate(model: nn.Module, loader: Iterable, *,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
             device: str | torch.device | None = None, amp: bool = False) -> dict[str, float]:
    """Average loss (and accuracy, for classification) of ``model`` over ``loader``.

    The averages are over examples: each batch's mean loss is weighted by its size. Under
    ``torch.distributed`` with a sharded loader (a ``DistributedSampler``, as ``make_loader`` builds),
    the sums are all-reduced, so every process returns the metrics of the whole dataset; call it
    on every process then.

    Args:
        model: the model; it returns logits.
        loader: yields ``(inputs, targets)`` batches.
        loss_fn: ``loss_fn(outputs, targets)``, a mean over the batch.
        device: where to evaluate (default: where the model's parameters are, else
            :func:`companion.utils.get_device`). The model is moved there.
        amp: run the forward pass under autocast (bf16 on CPU).

    Returns:
        ``{"loss": float}``, plus ``"accuracy"`` (fraction in [0, 1]) when outputs are logits
        ``(B, C)`` and targets integer class indices ``(B,)``.
    """
    device = _resolve_device(model, device)
    sum_dtype = torch.float32 if device.type == "mps" else torch.float64
    loss_sum = torch.zeros((), dtype=sum_dtype, device=device)
    correct = torch.zeros((), dtype=sum_dtype, device=device)
    count = 0
    classification: bool | None = None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                inputs, targets = split_batch(batch)
                inputs, targets = to_device(inputs, device), to_device(targets, device)
                with autocast(device, enabled=amp):
                    outputs = call_model(model, inputs)
                    if classification is None:
                        check_outputs(outputs, targets, loss_fn)
                    loss = loss_fn(outputs, targets)
                size = batch_size(targets)
                loss_sum += loss.to(sum_dtype) * size
                batch_is_classification = is_classification(outputs, targets)
                classification = batch_is_classification if classification is None \
                    else classification and batch_is_classification
                if classification:
                    correct += count_correct(outputs, targets)
                count += size
    finally:
        model.train(was_training)
    if classification is None:
        raise ValueError("the loader gave no batches; there is nothing to evaluate.")
    totals = torch.stack([loss_sum, correct,
                          torch.tensor(float(count), dtype=sum_dtype, device=device)])  # (3,)
    if _is_sharded(loader):
        totals = all_reduce_sum(totals)
    loss_total, correct_total, count_total = totals.tolist()
    metrics = {"loss": loss_total / count_total}
    if classification:
        metrics["accuracy"] = correct_total / count_total
    return metrics


def predict(model: nn.Module, loader: Iterable, *,
            device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs of ``model`` for every batch of ``loader``, in loader order, gathered on the CPU.

    Args:
        model: the model; it returns logits.
        loader: yields ``(inputs, targets)`` batches (use ``shuffle=False`` to keep dataset order).
        device: where to run the model (default: where its parameters are, else
            :func:`companion.utils.get_device`).

    Returns:
        ``(logits, targets)``: logits ``(N, C)`` as float32 and targets ``(N,)``, both on the CPU,
        ``N`` the number of examples the loader yields (more generally ``(N, ...)``).
    """
    device = _resolve_device(model, device)
    all_outputs: list[torch.Tensor] = []
    all_targets: list[torch.Tensor] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                inputs, targets = split_batch(batch)
                outputs = call_model(model, to_device(inputs, device))
                if not isinstance(outputs, torch.Tensor):
                    raise TypeError(f"predict needs a model that returns a tensor, got "
                                    f"{type(outputs).__name__}.")
                all_outputs.append(outputs.float().cpu())
                all_targets.append(torch.as_tensor(targets).cpu())
    finally:
        model.train(was_training)
    if not all_outputs:
        raise ValueError("the loader gave no batches; there is nothing to predict.")
    return torch.cat(all_outputs), torch.cat(all_targets)  # (N, C), (N,)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over all processes (a copy; unchanged when not distributed)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return values
    values = values.clone()
    torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.SUM)
    return values


def _is_sharded(loader: Iterable) -> bool:
    """True when each process sees a different part of the data (a ``DistributedSampler``)."""
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and isinstance(getattr(loader, "sampler", None), DistributedSampler))


def _resolve_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """The asked device (the model is moved there), else the model's own device."""
    if device is None:
        current = model_device(model)
        return current if current is not None else get_device()
    device = get_device(str(device))
    model.to(device)
    return device
