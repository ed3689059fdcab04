"""Checkpoints that survive a crash and explain themselves when they cannot be used.

A checkpoint is one file written by ``torch.save``: a dict with a format marker, the epoch, the
model, optimizer, scheduler and grad-scaler states, the History and the random-number-generator
states (so a resumed run draws the same dropout masks). It is written to a temporary file in the same
folder, flushed and fsync'ed, then renamed over the old one with ``os.replace``: a crash leaves
either the old checkpoint or the new one, never half a file. It is read back with
``torch.load(weights_only=True)``, which refuses to run code hidden in a pickle.

Taught in: book/01_foundations/02_mlp_fashion_mnist.ipynb (the training loop).
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from companion.engine.batches import unwrap_model
from companion.engine.history import History

logger = logging.getLogger(__name__)

FORMAT = "companion.engine.checkpoint"
VERSION = 1
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written, read or applied; the message names the file and the fix."""


def rng_state() -> dict[str, Any]:
    """The random-number-generator states of this process: torch CPU, CUDA (when in use), Python."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {"torch": torch.get_rng_state(), "cuda": list(cuda), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states returned by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if state.get("python") is not None:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any | None = None, scaler: torch.amp.GradScaler | None = None,
                    epoch: int, history: History | None = None,
                    rng_states: list[dict[str, Any]] | None = None) -> Path:
    """Write a checkpoint atomically (temp file in the same folder, fsync, ``os.replace``).

    Args:
        path: the file to write; its folder is created. An existing file is replaced only once the
            new one is completely on disk.
        model: the model; a ``DistributedDataParallel`` or compiled wrapper is unwrapped, so the
            parameter names carry no ``module.`` prefix.
        optimizer: its state (momentum buffers, Adam moments), if any.
        scheduler: the learning-rate scheduler, if any.
        scaler: the gradient scaler, if any.
        epoch: the number of epochs completed (a resumed run starts at epoch ``epoch + 1``).
        history: the metrics so far.
        rng_states: one :func:`rng_state` per process, indexed by rank (default: this process's).

    Returns:
        The path written.
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": int(epoch),
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "history": (history or History()).to_dict(),
        "rng": rng_states if rng_states is not None else [rng_state()],
        "torch_version": str(torch.__version__),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600 files
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (with ``weights_only=True``, on the CPU).

    Args:
        path: the checkpoint file.

    Returns:
        The checkpoint dict (keys ``format``, ``version``, ``epoch``, ``model``, ``optimizer``,
        ``scheduler``, ``scaler``, ``history``, ``rng``).

    Raises:
        CheckpointError: the file is missing, empty, truncated or corrupt, not a companion
            checkpoint, or from a newer version of the format. The file is never modified.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}: check the path and the working "
                              "folder.")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): the run that wrote it was "
                              "probably interrupted. Move it aside and train from scratch, or use "
                              "another checkpoint_path.")
    with open(path, "rb") as file:
        is_zip = file.read(4) == _ZIP_MAGIC
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if is_zip and "weights only" in str(error).lower():
            found = re.search(r"GLOBAL (\S+)", str(error))
            what = f" (such as {found.group(1)})" if found else ""
            raise CheckpointError(
                f"{path} is not a companion checkpoint: it holds Python objects{what} that "
                "torch.load(weights_only=True) refuses to load (only tensors and plain types are "
                "safe). Pass a checkpoint written by companion.engine.fit, or another "
                "checkpoint_path.") from error
        raise _unreadable(path, size, is_zip, error) from error
    except Exception as error:  # torch raises RuntimeError, EOFError, ... for damaged files
        raise _unreadable(path, size, is_zip, error) from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a companion checkpoint: {_describe(checkpoint)}. "
                              "To use bare weights, call model.load_state_dict(torch.load(path, "
                              "weights_only=True)) yourself; to resume training, pass a "
                              "checkpoint written by companion.engine.fit, or choose another "
                              "checkpoint_path.")
    if not isinstance(checkpoint.get("version"), int) or checkpoint["version"] > VERSION:
        raise CheckpointError(f"{path} uses checkpoint format version {checkpoint.get('version')!r}, "
                              f"but this companion reads versions up to {VERSION}: upgrade the "
                              "companion package.")
    missing = [key for key in ("epoch", "model", "history") if key not in checkpoint]
    if missing:
        raise CheckpointError(f"checkpoint {path} is damaged: it lacks {missing}. Move it aside and "
                              "train from scratch, or use another checkpoint_path.")
    return checkpoint


def restore_checkpoint(checkpoint: dict[str, Any], *, model: nn.Module,
                       optimizer: torch.optim.Optimizer | None = None, scheduler: Any | None = None,
                       scaler: torch.amp.GradScaler | None = None, path: str | Path | None = None,
                       restore_rng: bool = True, rank: int = 0) -> tuple[int, History]:
    """Load a checkpoint's states into the model, optimizer, scheduler and scaler.

    Everything is checked before anything is loaded: on error the objects are unchanged.

    Args:
        checkpoint: the dict from :func:`load_checkpoint`.
        model: a model built like the one that was saved (wrappers are unwrapped).
        optimizer: built like the one that was saved (same class and parameter groups).
        scheduler: the scheduler to restore, if any.
        scaler: the gradient scaler to restore, if any.
        path: the file it came from, for error messages.
        restore_rng: also restore the random-number-generator states.
        rank: which process's RNG state to restore (its rank under ``torch.distributed``).

    Returns:
        ``(epoch, history)``: the number of completed epochs and the metrics so far.

    Raises:
        CheckpointError: the model or optimizer does not match the checkpoint.
    """
    name = str(path) if path is not None else "the checkpoint"
    module = unwrap_model(model)
    _check_model(name, module, checkpoint["model"])
    optimizer_state = checkpoint.get("optimizer")
    if optimizer is not None and optimizer_state is not None:
        _check_optimizer(name, optimizer, optimizer_state)
    module.load_state_dict(checkpoint["model"])
    if optimizer is not None and optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    elif optimizer is not None:
        logger.warning("%s holds no optimizer state; the optimizer starts fresh.", name)
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    elif scheduler is not None or checkpoint.get("scheduler") is not None:
        logger.warning("%s was written %s a scheduler and this run has %s; the schedule may differ.",
                       name, "with" if checkpoint.get("scheduler") is not None else "without",
                       "one" if scheduler is not None else "none")
    if scaler is not None and scaler.is_enabled() and checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])
    states = checkpoint.get("rng") or []
    if restore_rng and states:
        set_rng_state(states[rank] if rank < len(states) else states[0])
    return int(checkpoint["epoch"]), History.from_dict(checkpoint["history"])


def _check_model(name: str, module: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Raise if parameter names or shapes differ between the checkpoint and the model."""
    current = module.state_dict()
    missing = [key for key in current if key not in saved]
    unexpected = [key for key in saved if key not in current]
    resized = [f"{key}: checkpoint {tuple(saved[key].shape)} vs model {tuple(value.shape)}"
               for key, value in current.items()
               if key in saved and tuple(saved[key].shape) != tuple(value.shape)]
    if not (missing or unexpected or resized):
        return
    problems = []
    if missing:
        problems.append(f"missing from the checkpoint: {_first(missing)}")
    if unexpected:
        problems.append(f"not in the model: {_first(unexpected)}")
    if resized:
        problems.append(f"different shapes: {_first(resized)}")
    hint = ""
    if unexpected and all(key.startswith("module.") for key in unexpected):
        hint = " (its names start with 'module.': it was saved from a DistributedDataParallel wrapper)"
    raise CheckpointError(f"{name} was written for a different model{hint}; "
                          + "; ".join(problems) + ". Build the model with the same arguments as the "
                          "run that wrote it, or choose another checkpoint_path.")


def _check_optimizer(name: str, optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Raise if the saved optimizer state cannot belong to ``optimizer``."""
    groups = saved.get("param_groups", [])
    sizes = [len(group["params"]) for group in groups]
    expected = [len(group["params"]) for group in optimizer.param_groups]
    if sizes != expected:
        raise CheckpointError(f"{name} holds optimizer state for parameter groups of sizes {sizes}, "
                              f"but this optimizer has groups of sizes {expected}. Build the "
                              "optimizer the same way as the run that wrote it.")
    saved_settings = set(groups[0]) - {"params"} if groups else set()
    settings = set(optimizer.param_groups[0]) - {"params"} if optimizer.param_groups else set()
    if saved_settings != settings:
        raise CheckpointError(f"{name} was written with a different optimizer (settings "
                              f"{sorted(saved_settings)}), but this one is a "
                              f"{type(optimizer).__name__} (settings {sorted(settings)}). Use the "
                              "same optimizer class as the run that wrote it.")


def _unreadable(path: Path, size: int, is_zip: bool, error: Exception) -> CheckpointError:
    if is_zip:
        return CheckpointError(f"checkpoint {path} is truncated or corrupt ({size} bytes; torch.load "
                               f"says: {str(error).strip().splitlines()[0]}). The run or copy that "
                               "wrote it was probably cut short. Move it aside and train from "
                               "scratch, or restore an intact copy.")
    return CheckpointError(f"{path} is not a companion checkpoint: it is not a file written by "
                           f"torch.save ({size} bytes that do not start like a torch.save archive). "
                           "Check the path, or choose another checkpoint_path.")


def _describe(content: Any) -> str:
    if isinstance(content, dict) and content and all(isinstance(value, torch.Tensor)
                                                     for value in content.values()):
        keys = list(content)
        return (f"it looks like a bare state_dict ({len(keys)} tensors such as {keys[0]!r}), "
                "as torch.save(model.state_dict()) writes")
    if isinstance(content, dict):
        return f"it holds a dict with keys {_first([str(key) for key in content])} and no format marker"
    return f"it holds a {type(content).__name__}"


def _first(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(repr(item) if "checkpoint (" not in item else item for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
