"""Activation functions written from their definitions, as plain functions on tensors.

Each function equals its ``torch.nn.functional`` counterpart (``tests/foundations/test_activations.py``
checks values and autograd derivatives on random inputs). They are written to be numerically safe
over the whole float range, which is where most of the care goes:

- ``sigmoid`` only ever exponentiates a non-positive number, so ``exp`` cannot overflow;
- ``elu`` exponentiates only the negative part of its input, so the unused branch of
  ``torch.where`` holds no ``inf`` whose zero gradient would turn into ``0 * inf = nan``;
- ``softmax`` and ``log_softmax`` subtract the maximum before exponentiating.

Shapes: every element-wise function maps a tensor of any shape ``(*)`` to the same shape;
``softmax`` and ``log_softmax`` normalise along one dimension.

Taught in: book/01_foundations/04_activations.ipynb.
"""

from __future__ import annotations

import math

import torch


def _check_floating(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} takes a torch.Tensor, got {type(x).__name__}; wrap it with torch.tensor(...).")
    if not x.is_floating_point():
        raise ValueError(f"{name} needs a floating-point tensor, got dtype {x.dtype}; convert it with x.float().")


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """The logistic function ``1 / (1 + exp(-x))``, with values in (0, 1).

    For ``x >= 0`` it is computed as ``1 / (1 + e)`` and for ``x < 0`` as ``e / (1 + e)``, with
    ``e = exp(-|x|)`` in (0, 1] in both cases. Its derivative is ``sigmoid(x) (1 - sigmoid(x))``,
    at most 1/4.

    Args:
        x: ``(*)`` floating-point tensor.

    Returns:
        ``(*)`` tensor of the same dtype.
    """
    _check_floating(x, "sigmoid")
    e = torch.exp(torch.where(x >= 0, -x, x))  # exp(-|x|), with the derivative of -|x| defined at 0
    return torch.where(x >= 0, 1 / (1 + e), e / (1 + e))


def tanh(x: torch.Tensor) -> torch.Tensor:
    """The hyperbolic tangent, a sigmoid stretched to (-1, 1): ``tanh(x) = 2 sigmoid(2x) - 1``.

    Its derivative is ``1 - tanh(x)^2``, at most 1 (at 0).

    Args:
        x: ``(*)`` floating-point tensor.

    Returns:
        ``(*)`` tensor of the same dtype.
    """
    _check_floating(x, "tanh")
    return 2 * sigmoid(2 * x) - 1


def relu(x: torch.Tensor) -> torch.Tensor:
    """The rectified linear unit ``max(0, x)``; autograd gives it derivative 0 at 0, like PyTorch.

    Args:
        x: ``(*)`` floating-point tensor.

    Returns:
        ``(*)`` tensor of the same dtype.
    """
    _check_floating(x, "relu")
    return torch.where(x <= 0, torch.zeros_like(x), x)  # a NaN input stays NaN, as in PyTorch


def leaky_relu(x: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    """``x`` for ``x > 0``, ``negative_slope * x`` otherwise (Maas et al., 2013).

    Args:
        x: ``(*)`` floating-point tensor.
        negative_slope: slope for negative inputs (PyTorch's default 0.01).

    Returns:
        ``(*)`` tensor of the same dtype.
    """
    _check_floating(x, "leaky_relu")
    return torch.where(x <= 0, negative_slope * x, x)


def elu(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """The exponential linear unit: ``x`` for ``x > 0``, ``alpha (exp(x) - 1)`` otherwise.

    Negative inputs saturate smoothly at ``-alpha`` (Clevert et al., 2016).

    Args:
        x: ``(*)`` floating-point tensor.
        alpha: the value negative inputs saturate to is ``-alpha``; must be positive.

    Returns:
        ``(*)`` tensor of the same dtype.
    """
    _check_floating(x, "elu")
    if alpha <= 0:
        raise ValueError(f"elu needs alpha > 0 (negative inputs saturate at -alpha), got {alpha}.")
    non_positive = torch.where(x > 0, torch.zeros_like(x), x)  # exp of a large positive x never runs
    negative_part = alpha * torch.expm1(non_positive)
    return torch.where(x > 0, x, negative_part)


def gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """The Gaussian error linear unit ``x Phi(x)`` (Hendrycks and Gimpel, 2016).

    ``Phi`` is the standard normal CDF, ``Phi(x) = (1 + erf(x / sqrt(2))) / 2``. With
    ``approximate="tanh"`` it uses the paper's approximation
    ``Phi(x) ~ (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2``, as ``F.gelu(x, approximate="tanh")``.

    Args:
        x: ``(*)`` floating-point tensor.
        approximate: ``"none"`` (exact, with erf) or ``"tanh"``.

    Returns:
        ``(*)`` tensor of the same dtype.
    """
    _check_floating(x, "gelu")
    if approximate == "none":
        return x * 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    if approximate == "tanh":
        return x * 0.5 * (1 + tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    raise ValueError(f"gelu's approximate must be 'none' or 'tanh', got {approximate!r}.")


def _check_dim(x: torch.Tensor, dim: int, name: str) -> None:
    _check_floating(x, name)
    if x.dim() == 0 or not -x.dim() <= dim < x.dim():
        raise ValueError(f"{name} normalises along dim={dim}, but the input has shape {tuple(x.shape)}; "
                         f"pass a dim between {-max(x.dim(), 1)} and {max(x.dim(), 1) - 1}.")


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``exp(x_i) / sum_j exp(x_j)`` along ``dim``, computed without overflow.

    Subtracting the maximum changes nothing mathematically (the factor ``exp(-max)`` cancels) and
    makes the largest exponent 0, so no ``exp`` overflows and the denominator is at least 1.

    Args:
        x: ``(*)`` floating-point tensor of scores (logits).
        dim: the dimension that sums to 1.

    Returns:
        ``(*)`` tensor of probabilities, same shape and dtype.
    """
    _check_dim(x, dim, "softmax")
    shifted = x - x.amax(dim=dim, keepdim=True).detach()  # (*), max along dim is 0
    exponentials = torch.exp(shifted)  # (*), in (0, 1]
    return exponentials / exponentials.sum(dim=dim, keepdim=True)  # (*) / (*, 1 along dim)


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``log(softmax(x))`` along ``dim`` as ``x - max - log(sum exp(x - max))`` (log-sum-exp).

    Taking the log of :func:`softmax` instead would give ``-inf`` for probabilities that underflow
    to 0; this form stays finite.

    Args:
        x: ``(*)`` floating-point tensor of scores (logits).
        dim: the dimension to normalise along.

    Returns:
        ``(*)`` tensor of log-probabilities, same shape and dtype.
    """
    _check_dim(x, dim, "log_softmax")
    shifted = x - x.amax(dim=dim, keepdim=True).detach()  # (*)
    return shifted - torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))  # (*) - (*, 1 along dim)


def dead_units(activations: torch.Tensor) -> torch.Tensor:
    """Which ReLU units output 0 for every example of a batch ("dead" on that batch).

    A ReLU unit whose pre-activation is negative for every input gets zero gradient from every
    input, so gradient descent cannot revive it unless the layers below change its inputs.

    Args:
        activations: ``(N, H)`` outputs of a ReLU layer for N examples.

    Returns:
        ``(H,)`` bool tensor, True for units that are 0 on all N examples.
    """
    if not isinstance(activations, torch.Tensor) or activations.dim() != 2 or activations.shape[0] == 0:
        shape = tuple(activations.shape) if isinstance(activations, torch.Tensor) else type(activations).__name__
        raise ValueError(f"dead_units takes (N, H) activations with N >= 1, got {shape}; "
                         "flatten the unit dimensions first, e.g. a.flatten(1).")
    return (activations <= 0).all(dim=0)  # (N, H) -> (H,)


ACTIVATIONS = {"sigmoid": sigmoid, "tanh": tanh, "relu": relu, "leaky_relu": leaky_relu,
               "elu": elu, "gelu": gelu}
"""The element-wise activations by name, for loops in the notebook and the tests."""
