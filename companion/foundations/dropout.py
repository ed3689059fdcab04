"""Inverted dropout: multiply activations by a random 0/1 mask during training, rescaled by 1/(1-p).

Each unit is kept with probability ``1 - p`` and zeroed with probability ``p``; kept units are
multiplied by ``1 / (1 - p)`` so that the expected output equals the input,
``E[m x / (1 - p)] = x``. At evaluation time the layer is the identity. Dropout multiplies by a
Bernoulli mask; it adds no noise term.

On the CPU, with the same seed, :class:`Dropout` draws the same mask as ``torch.nn.Dropout`` (both
fill a tensor shaped like the input with ``bernoulli_(1 - p)`` from the default generator);
``tests/foundations/test_dropout.py`` checks it. CUDA's fused dropout kernel draws its random
numbers differently, so there only the distribution is the same.

Taught in: book/01_foundations/06_regularization.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn


def _check_probability(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1] (the probability of zeroing a unit), got {p}.")


def dropout(x: torch.Tensor, p: float = 0.5, training: bool = True,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero each element of ``x`` with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    Args:
        x: activations, any shape ``(B, ...)``.
        p: probability of dropping (zeroing) an element, in ``[0, 1]``.
        training: when False, return ``x`` unchanged.
        generator: random generator for the mask (on ``x``'s device); None uses the default one,
            as ``torch.nn.functional.dropout`` does.

    Returns:
        A tensor shaped like ``x``.

    Raises:
        ValueError: ``p`` is outside ``[0, 1]``.
    """
    _check_probability(p)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * torch.zeros((), dtype=x.dtype, device=x.device)  # every unit dropped
    keep = torch.empty_like(x).bernoulli_(1.0 - p, generator=generator)  # same shape as x: 1 keep, 0 drop
    return x.mul(keep).mul_(1.0 / (1.0 - p))


class Dropout(nn.Module):
    """Inverted dropout as a layer: random mask in ``train()`` mode, identity in ``eval()`` mode.

    Args:
        p: probability of zeroing each element, in ``[0, 1]`` (PyTorch's convention; the dropout
            papers call ``1 - p`` the retention probability).
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        _check_probability(p)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, ...) -> (B, ...)``: :func:`dropout` with this layer's ``p`` and mode."""
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
