"""Mixed precision in one place: the autocast context and the gradient scaler.

On CPU autocast uses bfloat16. On CUDA it uses bfloat16 where the GPU supports it (Ampere and
newer) and float16 otherwise; only float16 needs a gradient scaler, because its narrow exponent
range lets small gradients underflow (Micikevicius et al., 2018). Only ``torch.amp`` APIs are used.
"""

from __future__ import annotations

import contextlib

import torch


def autocast_dtype(device: torch.device | str) -> torch.dtype:
    """The reduced-precision dtype autocast uses on ``device``.

    Args:
        device: the device the model runs on.

    Returns:
        ``torch.bfloat16`` on CPU and on CUDA GPUs that support it, else ``torch.float16``.
    """
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device | str, enabled: bool = True, dtype: torch.dtype | None = None):
    """Return the autocast context for ``device`` (a no-op context when ``enabled`` is False).

    Args:
        device: the device the model runs on; its type selects the autocast backend.
        enabled: False gives a context that changes nothing, so callers need no branch.
        dtype: override the dtype chosen by :func:`autocast_dtype`.

    Returns:
        A context manager.
    """
    device = torch.device(device)
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype or autocast_dtype(device))


def grad_scaler(device: torch.device | str, enabled: bool = True,
                dtype: torch.dtype | None = None) -> torch.amp.GradScaler:
    """Return a gradient scaler that is active only for CUDA float16 autocast.

    Args:
        device: the device the model runs on.
        enabled: whether mixed precision is on at all.
        dtype: the autocast dtype (default: :func:`autocast_dtype`).

    Returns:
        A ``torch.amp.GradScaler``; disabled (its ``scale`` is the identity) unless needed.
    """
    device = torch.device(device)
    dtype = dtype or autocast_dtype(device)
    active = enabled and device.type == "cuda" and dtype == torch.float16
    return torch.amp.GradScaler(device.type, enabled=active)
