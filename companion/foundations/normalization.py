"""Batch normalisation and layer normalisation, written out as the papers define them.

Both standardise activations, then let the network rescale them with a learned ``weight`` (gamma)
and ``bias`` (beta):

    y = (x - mean) / sqrt(var + eps) * weight + bias

They differ in *which* values share a mean and a variance:

* **Batch norm** (Ioffe & Szegedy, 2015): one mean and variance per channel, over the batch and
  the spatial positions, ``(B, C, H, W) -> (C,)``. A training batch is normalised with its own
  statistics (variance divided by ``n``); running averages of them, updated as
  ``running = (1 - momentum) * running + momentum * batch`` with the *unbiased* variance (divided by
  ``n - 1``), replace them in evaluation mode.
* **Layer norm** (Ba, Kiros & Hinton, 2016): one mean and variance per example, over its last
  dimensions, the same computation in training and evaluation.

Parameter and buffer names are PyTorch's, so ``ours.load_state_dict(nn.BatchNorm2d(C).state_dict())``
works; ``tests/foundations/test_normalization.py`` checks outputs, gradients and running statistics
against ``nn.BatchNorm1d``, ``nn.BatchNorm2d`` and ``nn.LayerNorm``.

Taught in: book/01_foundations/08_init_and_normalization.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class _BatchNorm(nn.Module):
    """Batch normalisation over every dimension except the channels (dimension 1).

    Args:
        num_features: the number of channels ``C``.
        eps: added to the variance before the square root.
        momentum: weight of the current batch in the running averages; None uses the cumulative
            average of all batches seen (weight ``1 / num_batches_tracked``), as PyTorch does.
        affine: learn a per-channel ``weight`` (init 1) and ``bias`` (init 0).
        track_running_stats: keep running averages for evaluation; False normalises every batch with
            its own statistics, in training and evaluation.
    """

    _input_dims: tuple[int, ...] = ()  # allowed numbers of input dimensions, set by subclasses

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be a positive number of channels, got {num_features}.")
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))  # gamma, (C,)
            self.bias = nn.Parameter(torch.zeros(num_features))  # beta, (C,)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))  # (C,)
            self.register_buffer("running_var", torch.ones(num_features))  # (C,)
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches seen."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() not in self._input_dims:
            raise ValueError(f"{type(self).__name__} expects {' or '.join(map(str, self._input_dims))}-D "
                             f"input (B, C, ...), got shape {tuple(x.shape)}; use the BatchNorm of the "
                             f"matching dimension.")
        if x.shape[1] != self.num_features:
            raise ValueError(f"input has {x.shape[1]} channels (dimension 1) but the layer was built "
                             f"with num_features={self.num_features}.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``(B, C, ...)`` inputs per channel; returns the same shape."""
        self._check_input(x)
        reduce_dims = [0] + list(range(2, x.dim()))  # every dimension except the channels
        values_per_channel = x.numel() // x.shape[1]
        use_batch_statistics = self.training or not self.track_running_stats
        if use_batch_statistics:
            if self.training and values_per_channel < 2:
                raise ValueError(f"batch norm needs more than 1 value per channel in training, got input "
                                 f"shape {tuple(x.shape)}; use a larger batch (or eval mode).")
            var, mean = torch.var_mean(x, dim=reduce_dims, correction=0)  # (C,), (C,): biased, divides by n
            if self.training and self.track_running_stats:
                self._update_running_stats(mean.detach(), var.detach(), values_per_channel)
        else:
            mean, var = self.running_mean, self.running_var  # (C,), (C,)
        shape = [1, -1] + [1] * (x.dim() - 2)  # broadcast (C,) over (B, C, ...)
        x_hat = (x - mean.reshape(shape)) * torch.rsqrt(var.reshape(shape) + self.eps)
        if self.affine:
            x_hat = x_hat * self.weight.reshape(shape) + self.bias.reshape(shape)
        return x_hat

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
        self.num_batches_tracked += 1
        if self.momentum is None:  # cumulative moving average
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        unbiased_var = var * (n / (n - 1))  # the running variance estimates the population's
        self.running_mean.mul_(1 - factor).add_(factor * mean)
        self.running_var.mul_(1 - factor).add_(factor * unbiased_var)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm for ``(B, C)`` features or ``(B, C, L)`` sequences (drop-in for ``nn.BatchNorm1d``).

    Args: as :class:`BatchNorm2d`.
    """

    _input_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm for ``(B, C, H, W)`` feature maps (drop-in for ``nn.BatchNorm2d``).

    Statistics are per channel over ``B * H * W`` values. In ``train()`` mode a batch is normalised
    with its own mean and biased variance and the running averages are updated; in ``eval()`` mode
    the running averages are used.

    Args:
        num_features: the number of channels ``C``.
        eps: added to the variance before the square root.
        momentum: weight of the current batch in the running averages (None: cumulative average).
        affine: learn a per-channel ``weight`` and ``bias``.
        track_running_stats: keep running averages for evaluation.
    """

    _input_dims = (4,)


class LayerNorm(nn.Module):
    """Layer norm over the last dimensions of every example (drop-in for ``nn.LayerNorm``).

    Args:
        normalized_shape: the trailing shape to normalise over, e.g. ``C`` for ``(B, T, C)`` tokens
            or ``(C, H, W)`` for whole feature maps.
        eps: added to the variance before the square root.
        elementwise_affine: learn a ``weight`` (init 1) of shape ``normalized_shape``.
        bias: learn a ``bias`` (init 0) as well (only with ``elementwise_affine``).
    """

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True) -> None:
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(size) for size in normalized_shape)
        if not self.normalized_shape or min(self.normalized_shape) < 1:
            raise ValueError(f"normalized_shape must be one or more positive sizes, got {normalized_shape}.")
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        weight = nn.Parameter(torch.ones(self.normalized_shape)) if elementwise_affine else None
        bias_parameter = nn.Parameter(torch.zeros(self.normalized_shape)) \
            if elementwise_affine and bias else None
        self.register_parameter("weight", weight)  # gamma, normalized_shape
        self.register_parameter("bias", bias_parameter)  # beta, normalized_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``(..., *normalized_shape)`` inputs per example; returns the same shape."""
        k = len(self.normalized_shape)
        if tuple(x.shape[x.dim() - k:]) != self.normalized_shape:
            raise ValueError(f"input shape {tuple(x.shape)} does not end with normalized_shape "
                             f"{self.normalized_shape}; build LayerNorm({tuple(x.shape[-k:])}) or "
                             f"reshape the input.")
        dims = tuple(range(x.dim() - k, x.dim()))  # the last k dimensions
        var, mean = torch.var_mean(x, dim=dims, correction=0, keepdim=True)  # (..., 1, ..., 1), biased
        x_hat = (x - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            x_hat = x_hat * self.weight  # broadcasts over the leading dimensions
        if self.bias is not None:
            x_hat = x_hat + self.bias
        return x_hat

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
