"""Local response normalisation (Krizhevsky, Sutskever & Hinton, 2012), written from the paper's formula.

The activity ``a[c, x, y]`` of channel ``c`` is divided by a power of the summed squares of the
activities of the ``n`` channels around it at the same position:

    b[c] = a[c] / (k + alpha * sum_{j = c - n//2}^{c + n//2} a[j]^2) ** beta

with channels outside ``0 .. C-1`` left out of the sum. The paper used ``k = 2``, ``n = 5``,
``alpha = 1e-4``, ``beta = 0.75``.

PyTorch's ``torch.nn.LocalResponseNorm`` divides the sum by ``n`` (it averages the squares), so the
paper's layer is ``nn.LocalResponseNorm(size=n, alpha=n * alpha, beta=beta, k=k)``;
:func:`to_torch_arguments` does this conversion.

Taught in: book/02_cnn/03_alexnet.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check_size(size: int) -> None:
    if size < 1 or size % 2 == 0:
        raise ValueError(f"local response normalisation size must be a positive odd number, got {size}; "
                         "the window c - size//2 .. c + size//2 holds exactly `size` channels only when "
                         "size is odd (the paper used 5).")


def local_response_norm(x: torch.Tensor, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 2.0) -> torch.Tensor:
    """Normalise each activity by the energy of its ``size`` neighbouring channels (paper convention).

    Args:
        x: activities ``(B, C, H, W)`` (any number of trailing spatial dimensions works).
        size: ``n``, the odd number of adjacent channels summed over (the channel itself included).
        alpha: scale of the summed squares, *not* divided by ``size`` (the paper's ``alpha``).
        beta: exponent.
        k: additive constant that keeps the denominator away from zero.

    Returns:
        Tensor of the same shape as ``x``.

    Raises:
        ValueError: ``x`` has fewer than 3 dimensions, or ``size`` is not a positive odd number.
    """
    if x.dim() < 3:
        raise ValueError(f"local response normalisation needs inputs (B, C, H, W), got shape "
                         f"{tuple(x.shape)}; add the batch and spatial dimensions.")
    _check_size(size)
    channels = x.shape[1]
    half = size // 2
    squares = x.square()  # (B, C, H, W)
    # zero channels on both sides stand for the channels that do not exist at the borders
    padded = F.pad(squares.movedim(1, -1), (half, half)).movedim(-1, 1)  # (B, C + 2*half, H, W)
    # window sum: channel c sees padded channels c .. c + size - 1, i.e. original c - half .. c + half
    energy = sum(padded[:, offset:offset + channels] for offset in range(size))  # (B, C, H, W)
    return x / (k + alpha * energy).pow(beta)


def to_torch_arguments(size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
                       k: float = 2.0) -> dict[str, float]:
    """Keyword arguments of ``torch.nn.LocalResponseNorm`` equal to the paper's ``(n, alpha, beta, k)``.

    PyTorch averages the squares over the window, the paper sums them: ``alpha_torch = n * alpha``.
    """
    _check_size(size)
    return {"size": size, "alpha": size * alpha, "beta": beta, "k": k}


class LocalResponseNorm(nn.Module):
    """Module form of :func:`local_response_norm`; it has no parameters.

    Args:
        size, alpha, beta, k: as in :func:`local_response_norm` (defaults are the paper's).
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> None:
        super().__init__()
        _check_size(size)
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
