"""The training loop the whole book uses: ``fit`` and its recipe, ``TrainConfig``.

One loop, written once: mixed precision, gradient clipping and accumulation, learning-rate
schedules, checkpoints that resume bit-identically, and DistributedDataParallel when
``torch.distributed`` is initialised (launch with ``torchrun``; see ``companion.distributed``).

Taught in: book/01_foundations/02_mlp_fashion_mnist.ipynb (the training loop).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from companion.engine.batches import (batch_size, call_model, check_outputs, count_correct,
                                      is_classification, split_batch, to_device, unwrap_model)
from companion.engine.checkpoint import (CheckpointError, load_checkpoint, restore_checkpoint,
                                         rng_state, save_checkpoint)
from companion.engine.evaluation import all_reduce_sum, evaluate
from companion.engine.history import History
from companion.utils.amp import autocast, grad_scaler
from companion.utils.device import get_device

logger = logging.getLogger(__name__)

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass
class TrainConfig:
    """How ``fit`` trains: a recipe whose defaults are plain full-precision training."""

    # Passes over the training data; the book's quick profile uses few, the full profile more.
    epochs: int = 5
    # Mixed precision via companion.utils.amp: bf16 on CPU, bf16 or fp16 on CUDA; a gradient scaler
    # is used only for CUDA fp16. Off by default so that results match the float32 math in the text.
    amp: bool = False
    # Clip the global L2 norm of all gradients to this value (after unscaling); None: no clipping,
    # which plain CNNs on small data do not need.
    grad_clip: float | None = None
    # Micro-batches per optimizer step: the loss is divided by the group size, so k batches of b
    # give the update of one batch of k*b. DDP skips the gradient all-reduce (no_sync) on the
    # micro-batches that do not step. A trailing partial group at the end of an epoch still steps.
    accumulation_steps: int = 1
    # Written atomically at the end of every epoch (by rank 0 only); None: no checkpoints.
    checkpoint_path: str | Path | None = None
    # Continue from checkpoint_path when it exists. False with an existing file is an error, so a
    # finished run is never overwritten by accident.
    resume: bool = False
    # tqdm progress bars. None: automatic, off when COMPANION_PROGRESS=0 (the book build), when
    # the CI environment variable is set, or when neither a terminal nor a notebook is attached.
    progress: bool | None = None
    # Where to train; None: companion.utils.get_device() (CUDA when available, else CPU).
    device: str | torch.device | None = None
    # Model and 4-D inputs in channels_last memory format (faster convolutions with tensor cores).
    channels_last: bool = False
    # "epoch": scheduler.step() once per epoch (after validation); "step": after every optimizer step.
    scheduler_interval: str = "epoch"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` for settings that cannot work (``fit`` calls it too)."""
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}.")
        if self.accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be >= 1, got {self.accumulation_steps}.")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}.")
        if self.scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {self.scheduler_interval!r}.")
        if self.resume and self.checkpoint_path is None:
            raise ValueError("resume=True needs a checkpoint_path to resume from.")


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: Iterable,
        val_loader: Iterable | None = None, *, config: TrainConfig | None = None,
        loss_fn: LossFunction = F.cross_entropy, scheduler: Any | None = None) -> History:
    """Train ``model`` for ``config.epochs`` epochs and return what was measured.

    Every epoch: ``set_epoch`` on the loader's sampler (so shuffling depends only on the seed and
    the epoch), a pass over ``train_loader`` with the model in ``train()`` mode, an evaluation on
    ``val_loader``, a scheduler step (with ``scheduler_interval="epoch"``) and a checkpoint.
    Metrics are averages over examples. Under ``torch.distributed`` the model is wrapped in
    ``DistributedDataParallel``, the epoch metrics are all-reduced (every process returns the same
    History) and only rank 0 shows progress and writes checkpoints. The model is trained in place.

    Args:
        model: returns logits for a batch of inputs; moved to ``config.device``.
        optimizer: built on ``model.parameters()``.
        train_loader: yields ``(inputs, targets)``; ``inputs`` a tensor ``(B, ...)`` (or a tuple /
            dict of tensors passed as ``model(*inputs)`` / ``model(**inputs)``), ``targets`` ``(B, ...)``.
        val_loader: evaluated after every epoch, if given.
        config: the recipe (default ``TrainConfig()``).
        loss_fn: ``loss_fn(logits, targets)``, a mean over the batch.
        scheduler: a learning-rate scheduler stepped per ``config.scheduler_interval``;
            ``ReduceLROnPlateau`` is stepped with the validation loss (or the training loss).

    Returns:
        The :class:`History`, including epochs restored from a checkpoint.

    Raises:
        ValueError: the model's outputs do not fit the labels (checked on the first batch).
        CheckpointError: ``checkpoint_path`` exists and ``resume`` is False, or it cannot be resumed.
    """
    config = config if config is not None else TrainConfig()
    config.validate()
    device = get_device(None if config.device is None else str(config.device))
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if distributed else 0
    module = unwrap_model(model)
    module.to(device)
    if config.channels_last:
        module.to(memory_format=torch.channels_last)
    scaler = grad_scaler(device, config.amp)

    history, start_epoch = History(), 0
    path = Path(config.checkpoint_path) if config.checkpoint_path is not None else None
    if path is not None and path.exists():
        if not config.resume:
            raise CheckpointError(f"checkpoint {path} exists; pass resume=True to continue it or "
                                  "choose another path (fit never overwrites an existing checkpoint "
                                  "at the start of a run).")
        checkpoint = load_checkpoint(path)
        start_epoch, history = restore_checkpoint(checkpoint, model=module, optimizer=optimizer,
                                                  scheduler=scheduler, scaler=scaler, path=path,
                                                  rank=rank)
        logger.info("resumed %s after epoch %d of %d", path, start_epoch, config.epochs)
    elif path is not None and config.resume:
        logger.info("no checkpoint at %s yet; starting a new run", path)

    train_model = model
    if distributed and not isinstance(model, DistributedDataParallel):
        device_ids = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == "cuda" else None
        train_model = DistributedDataParallel(model, device_ids=device_ids)

    show = progress_enabled(config.progress) and rank == 0
    state = {"checked": False}  # the output check runs once, on the first batch
    tqdm = progress_bar_class(show)
    epochs_bar = tqdm(total=config.epochs, initial=min(start_epoch, config.epochs), desc="epochs",
                      unit="epoch", disable=not show, dynamic_ncols=True)
    try:
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            learning_rate = float(optimizer.param_groups[0]["lr"])
            _set_epoch(train_loader, epoch)
            record: dict[str, float | int] = {"epoch": epoch + 1}
            train = _train_one_epoch(train_model, optimizer, train_loader, config=config,
                                     loss_fn=loss_fn, scheduler=scheduler, scaler=scaler,
                                     device=device, epoch=epoch, show=show, state=state)
            record.update({f"train_{name}": value for name, value in train.items()})
            if val_loader is not None:
                validation = evaluate(module, val_loader, loss_fn=loss_fn, device=device, amp=config.amp)
                record.update({f"val_{name}": value for name, value in validation.items()})
            if scheduler is not None and config.scheduler_interval == "epoch":
                _step_scheduler(scheduler, record)
            record["lr"] = learning_rate
            record["seconds"] = _same_on_all_ranks(time.perf_counter() - started, device, distributed)
            history.append(record)
            if not math.isfinite(record["train_loss"]):
                logger.warning("epoch %d: the training loss is %s; lower the learning rate or set "
                               "grad_clip.", epoch + 1, record["train_loss"])
            if path is not None:
                states = [rng_state()]
                if distributed:
                    states = [None] * torch.distributed.get_world_size()
                    torch.distributed.all_gather_object(states, rng_state())
                if rank == 0:
                    save_checkpoint(path, model=module, optimizer=optimizer, scheduler=scheduler,
                                    scaler=scaler, epoch=epoch + 1, history=history, rng_states=states)
            if rank == 0:
                logger.info("%s", _format(record))
            epochs_bar.set_postfix({key: round(value, 4) for key, value in record.items()
                                    if key.startswith(("train_", "val_"))}, refresh=False)
            epochs_bar.update(1)
    finally:
        epochs_bar.close()
    return history


def _train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable, *,
                     config: TrainConfig, loss_fn: LossFunction, scheduler: Any | None,
                     scaler: torch.amp.GradScaler, device: torch.device, epoch: int, show: bool,
                     state: dict[str, bool]) -> dict[str, float]:
    """One pass over ``loader``; returns ``{"loss": ..., "accuracy": ...}`` averaged over examples."""
    model.train()
    steps = config.accumulation_steps
    num_batches = len(loader) if hasattr(loader, "__len__") else None
    ddp = isinstance(model, DistributedDataParallel)
    sum_dtype = torch.float32 if device.type == "mps" else torch.float64
    loss_sum = torch.zeros((), dtype=sum_dtype, device=device)
    correct = torch.zeros((), dtype=sum_dtype, device=device)
    count, classification, pending = 0, True, False
    optimizer.zero_grad(set_to_none=True)
    bar = progress_bar_class(show)(loader, total=num_batches, desc=f"epoch {epoch + 1}", unit="batch",
                                   leave=False, disable=not show, dynamic_ncols=True)
    for index, batch in enumerate(bar):
        inputs, targets = split_batch(batch)
        inputs = to_device(inputs, device, config.channels_last)
        targets = to_device(targets, device)
        group_start = index - index % steps
        group_size = min(steps, num_batches - group_start) if num_batches is not None else steps
        step_now = index - group_start + 1 == group_size
        # Gradients are all-reduced only on the micro-batch that steps (when the length is known).
        skip_sync = ddp and not step_now and num_batches is not None
        with model.no_sync() if skip_sync else contextlib.nullcontext():
            with autocast(device, enabled=config.amp):
                outputs = call_model(model, inputs)
                if not state["checked"]:
                    check_outputs(outputs, targets, loss_fn)
                    state["checked"] = True
                loss = loss_fn(outputs, targets)
            scaler.scale(loss / group_size if group_size > 1 else loss).backward()
        pending = True
        size = batch_size(targets)
        loss_sum += loss.detach().to(sum_dtype) * size
        classification = classification and is_classification(outputs, targets)
        if classification:
            correct += count_correct(outputs.detach(), targets)
        count += size
        if step_now:
            _optimizer_step(model, optimizer, scaler, config.grad_clip)
            pending = False
            if scheduler is not None and config.scheduler_interval == "step":
                scheduler.step()
        if show and index % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    if pending:  # a loader without len() ended inside an accumulation group
        _optimizer_step(model, optimizer, scaler, config.grad_clip)
        if scheduler is not None and config.scheduler_interval == "step":
            scheduler.step()
    if count == 0:
        raise ValueError("the training loader gave no batches; check the dataset size, the batch "
                         "size and drop_last.")
    totals = all_reduce_sum(torch.stack([loss_sum, correct, torch.tensor(
        float(count), dtype=sum_dtype, device=device)]))  # (3,): summed over processes
    loss_total, correct_total, count_total = totals.tolist()
    metrics = {"loss": loss_total / count_total}
    if classification:
        metrics["accuracy"] = correct_total / count_total
    return metrics


def _optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, grad_clip: float | None) -> None:
    """Unscale, clip, step (skipped by the scaler on inf/NaN gradients), update, zero."""
    if grad_clip is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


def _step_scheduler(scheduler: Any, record: dict[str, float | int]) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(record.get("val_loss", record["train_loss"]))
    else:
        scheduler.step()


def _set_epoch(loader: Iterable, epoch: int) -> None:
    """Tell the sampler (or batch sampler) which epoch starts, so its shuffle depends on it."""
    for holder in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None), loader):
        if holder is not None and callable(getattr(holder, "set_epoch", None)):
            holder.set_epoch(epoch)
            return


def _same_on_all_ranks(seconds: float, device: torch.device, distributed: bool) -> float:
    """The slowest process's epoch time, so every rank records the same History."""
    if not distributed:
        return seconds
    value = torch.tensor([seconds], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return float(value.item())


def _format(record: dict[str, float | int]) -> str:
    return " ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in record.items())


def progress_bar_class(show: bool):
    """The tqdm class to use: notebook widgets when shown in a notebook with ipywidgets, else text.

    ``tqdm.auto`` is imported only when bars are shown: importing it in a kernel without
    ipywidgets prints a warning, which would become part of every notebook's output.
    """
    from tqdm import tqdm as text_bar

    if not show or "ipykernel" not in sys.modules:
        return text_bar
    try:
        import ipywidgets  # noqa: F401  (the notebook bar needs it)
        from tqdm.auto import tqdm as auto_bar
    except ImportError:
        return text_bar
    return auto_bar


def progress_enabled(setting: bool | None = None) -> bool:
    """Whether to show progress bars.

    Args:
        setting: True or False decide; None decides from the environment: ``COMPANION_PROGRESS``
            (``0`` off, ``1`` on) wins, then a set ``CI`` variable turns bars off, else they are on
            in a notebook kernel or a terminal.

    Returns:
        True to show tqdm bars.
    """
    if setting is not None:
        return bool(setting)
    forced = os.environ.get("COMPANION_PROGRESS", "").strip().lower()
    if forced:
        return forced not in ("0", "false", "no", "off")
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false"):
        return False
    if "ipykernel" in sys.modules:
        try:
            from IPython import get_ipython

            shell = get_ipython()
            if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
                return True
        except ImportError:
            pass
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
