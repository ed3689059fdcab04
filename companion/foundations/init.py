"""Weight initialisation from variance propagation: Xavier/Glorot and Kaiming/He.

A linear layer ``y = W x`` with ``W`` of shape ``(fan_out, fan_in)``, zero-mean weights of variance
``Var[w]`` drawn independently of the inputs, gives every output the second moment

    E[y_i^2] = fan_in * Var[w] * E[x_j^2].

Keeping the scale of the signal constant through depth therefore asks for ``Var[w] = 1 / fan_in``
when the inputs are zero-mean (LeCun), ``2 / fan_in`` after a ReLU, which zeroes half of a symmetric
input and so halves its second moment (He et al. 2015), and, for the gradients flowing backwards,
``1 / fan_out``. Glorot & Bengio (2010) compromise between the forward and the backward condition
with ``Var[w] = 2 / (fan_in + fan_out)``.

The functions follow ``torch.nn.init``: the same fans (a convolution kernel ``(C_out, C_in, k, k)``
has ``fan_in = C_in k^2``), the same gains and the same bounds. They draw with the tensor's own
``uniform_``/``normal_``, exactly as ``torch.nn.init`` does, so with the same generator state they
return the same values (``tests/foundations/test_init.py`` checks it).

Taught in: book/01_foundations/08_init_and_normalization.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

# Gains of torch.nn.init.calculate_gain: the factor by which a non-linearity's std is restored.
_LINEAR = ("linear", "identity", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d", "sigmoid")
_MODES = ("fan_in", "fan_out")


def fan_in_and_fan_out(weight: torch.Tensor) -> tuple[int, int]:
    """The number of inputs and outputs that each weight of a layer connects.

    Args:
        weight: ``(out_features, in_features)`` for a linear layer, or
            ``(C_out, C_in, *kernel_size)`` for a convolution.

    Returns:
        ``(fan_in, fan_out)``: ``in_features * prod(kernel_size)`` and
        ``out_features * prod(kernel_size)``.

    Raises:
        ValueError: the tensor has fewer than 2 dimensions (a bias has no fan).
    """
    if weight.dim() < 2:
        raise ValueError(f"fans are defined for weights with at least 2 dimensions (out, in, ...), got "
                         f"shape {tuple(weight.shape)}; initialise biases directly (e.g. with zeros).")
    receptive_field = math.prod(weight.shape[2:])  # 1 for a linear layer, k*k for a 2-D kernel
    return weight.shape[1] * receptive_field, weight.shape[0] * receptive_field


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor that multiplies the std of the weights before a given non-linearity.

    ``sqrt(2)`` for ReLU compensates for the halved second moment, ``sqrt(2 / (1 + a^2))`` for a
    leaky ReLU of slope ``a``; ``5/3`` for tanh is an empirical value (tanh shrinks its inputs).
    Linear layers, convolutions and the sigmoid get 1.

    Args:
        nonlinearity: the ``torch.nn.functional`` name: ``"linear"``, ``"conv2d"``, ``"sigmoid"``,
            ``"tanh"``, ``"relu"``, ``"leaky_relu"`` or ``"selu"``.
        param: the negative slope of ``"leaky_relu"`` (default 0.01).

    Returns:
        The gain, as ``torch.nn.init.calculate_gain`` returns it.

    Raises:
        ValueError: unknown non-linearity, or a slope that is not a number.
    """
    if nonlinearity in _LINEAR:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"the negative slope of leaky_relu must be a number, got {param!r}.")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    known = ", ".join(_LINEAR + ("tanh", "relu", "leaky_relu", "selu"))
    raise ValueError(f"unknown non-linearity {nonlinearity!r}; use one of: {known}.")


def xavier_std(weight: torch.Tensor, gain: float = 1.0) -> float:
    """``gain * sqrt(2 / (fan_in + fan_out))``, the std of Glorot & Bengio's initialisation."""
    fan_in, fan_out = fan_in_and_fan_out(weight)
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def kaiming_std(weight: torch.Tensor, a: float = 0.0, mode: str = "fan_in",
                nonlinearity: str = "leaky_relu") -> float:
    """``gain / sqrt(fan)``, the std of He et al.'s initialisation (``fan`` per ``mode``)."""
    if mode not in _MODES:
        raise ValueError(f"mode must be 'fan_in' (keep the forward signal) or 'fan_out' (keep the "
                         f"backward gradients), got {mode!r}.")
    fan_in, fan_out = fan_in_and_fan_out(weight)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def xavier_uniform_(weight: torch.Tensor, gain: float = 1.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``weight`` in place from ``U(-bound, bound)``, ``bound = sqrt(3) * xavier_std``.

    A uniform distribution on ``[-b, b]`` has variance ``b^2 / 3``, hence the ``sqrt(3)``; without a
    gain the bound is ``sqrt(6 / (fan_in + fan_out))``, the "normalized initialization" of
    Glorot & Bengio (2010).

    Args:
        weight: ``(fan_out, fan_in, ...)`` tensor, overwritten.
        gain: scale factor (see :func:`calculate_gain`).
        generator: random generator (default: the global one).

    Returns:
        ``weight``.
    """
    if weight.numel() == 0:
        return weight
    bound = math.sqrt(3.0) * xavier_std(weight, gain)
    with torch.no_grad():
        return weight.uniform_(-bound, bound, generator=generator)


def xavier_normal_(weight: torch.Tensor, gain: float = 1.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``weight`` in place from ``N(0, xavier_std^2)``.

    Args:
        weight: ``(fan_out, fan_in, ...)`` tensor, overwritten.
        gain: scale factor (see :func:`calculate_gain`).
        generator: random generator (default: the global one).

    Returns:
        ``weight``.
    """
    if weight.numel() == 0:
        return weight
    std = xavier_std(weight, gain)
    with torch.no_grad():
        return weight.normal_(0.0, std, generator=generator)


def kaiming_uniform_(weight: torch.Tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``weight`` in place from ``U(-bound, bound)``, ``bound = sqrt(3) * gain / sqrt(fan)``.

    With ``nonlinearity="relu"`` (or the default leaky ReLU with ``a=0``) the variance is
    ``2 / fan``, He et al.'s condition for ReLU networks.

    Args:
        weight: ``(fan_out, fan_in, ...)`` tensor, overwritten.
        a: negative slope of the leaky ReLU that follows (used with ``"leaky_relu"`` only).
        mode: ``"fan_in"`` keeps the variance of the activations in the forward pass,
            ``"fan_out"`` that of the gradients in the backward pass.
        nonlinearity: the non-linearity after this layer (see :func:`calculate_gain`).
        generator: random generator (default: the global one).

    Returns:
        ``weight``.
    """
    std = kaiming_std(weight, a, mode, nonlinearity)
    if weight.numel() == 0:
        return weight
    bound = math.sqrt(3.0) * std
    with torch.no_grad():
        return weight.uniform_(-bound, bound, generator=generator)


def kaiming_normal_(weight: torch.Tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu",
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``weight`` in place from ``N(0, gain^2 / fan)``.

    Args:
        weight: ``(fan_out, fan_in, ...)`` tensor, overwritten.
        a: negative slope of the leaky ReLU that follows (used with ``"leaky_relu"`` only).
        mode: ``"fan_in"`` (forward pass) or ``"fan_out"`` (backward pass).
        nonlinearity: the non-linearity after this layer (see :func:`calculate_gain`).
        generator: random generator (default: the global one).

    Returns:
        ``weight``.
    """
    std = kaiming_std(weight, a, mode, nonlinearity)
    if weight.numel() == 0:
        return weight
    with torch.no_grad():
        return weight.normal_(0.0, std, generator=generator)


def activation_stds(inputs: torch.Tensor, weights: Sequence[torch.Tensor],
                    activation: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The std of the activations after every layer of a deep network without biases.

    Computes ``x_l = activation(x_{l-1} @ W_l^T)`` and records ``x_l.std()`` over all examples and
    units: the quantity the initialisations above try to keep constant.

    Args:
        inputs: ``(B, D)`` batch (flatten images first).
        weights: ``L`` matrices, the first ``(H, D)``, the others ``(H, H)`` (any chain of shapes).
        activation: element-wise non-linearity, e.g. ``torch.tanh`` or ``torch.relu``.

    Returns:
        ``(L,)`` float tensor of standard deviations, on the inputs' device.

    Raises:
        ValueError: ``inputs`` is not 2-D, or a weight does not fit the previous layer.
    """
    if inputs.dim() != 2:
        raise ValueError(f"inputs must be a (B, D) batch, got shape {tuple(inputs.shape)}; flatten "
                         f"images with inputs.flatten(1).")
    stds = []
    x = inputs
    with torch.no_grad():
        for index, weight in enumerate(weights):
            if weight.dim() != 2 or weight.shape[1] != x.shape[1]:
                raise ValueError(f"layer {index} has weight shape {tuple(weight.shape)} but receives "
                                 f"{x.shape[1]} features; it must be (out, {x.shape[1]}).")
            x = activation(x @ weight.T)  # (B, in) @ (in, out) -> (B, out)
            stds.append(x.std())
    if not stds:
        return inputs.new_zeros(0)
    return torch.stack(stds)  # (L,)
