"""Which device to compute on."""

from __future__ import annotations

import torch


def get_device(prefer: str | None = None) -> torch.device:
    """Return the device to train on: CUDA when available, else CPU.

    Args:
        prefer: an explicit device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``) that overrides
            the automatic choice. Asking for CUDA on a machine without it is an error.

    Returns:
        A ``torch.device``.
    """
    if prefer is not None:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {prefer!r} was asked for but CUDA is not available here; "
                "use 'cpu' or run on a machine with a GPU (on Colab: Runtime > Change runtime type)."
            )
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
