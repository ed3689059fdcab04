"""Depthwise separable convolution: a standard convolution factorised into a per-channel spatial
filter (depthwise) and a 1x1 channel mixer (pointwise).

A standard convolution from ``M`` to ``N`` channels with ``K x K`` kernels filters space and
combines channels in one step. The depthwise separable version first filters every input channel
on its own with one ``K x K`` kernel (a grouped convolution with ``groups = M``), then mixes the
``M`` filtered channels with ``N`` linear combinations (a ``1 x 1`` convolution). Its cost relative to the standard
convolution is ``1/N + 1/K^2`` (Howard et al., 2017, section 3.1).

The readable tier (:func:`depthwise_conv2d`, :func:`pointwise_conv2d`) is plain tensor code and is
checked against ``F.conv2d`` in the tests; :class:`DepthwiseSeparableConv2d` uses ``nn.Conv2d``.
:func:`compose_separable` and :func:`nearest_separable` show that the factorisation is a restricted
standard convolution, of rank one per input channel.

Taught in: book/02_cnn/08_mobilenet.ipynb.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


def _check_feature_map(x: torch.Tensor, channels: int, name: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} expects a 4-D input (B, C, H, W), got shape {tuple(x.shape)}; "
                         "add a batch dimension with x.unsqueeze(0).")
    if x.shape[1] != channels:
        raise ValueError(f"{name}: the input has {x.shape[1]} channels but the weight expects "
                         f"{channels}; pass a tensor with {channels} channels or rebuild the weight.")


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     stride: int = 1, padding: int = 0) -> torch.Tensor:
    """Filter every channel with its own ``K x K`` kernel; no mixing across channels.

    Written as a sum over the ``K * K`` kernel offsets: for offset ``(u, v)`` every channel's
    shifted, strided view of the input is scaled by that channel's weight ``w[c, u, v]``. It equals
    ``F.conv2d(x, weight, bias, stride, padding, groups=C)``.

    Args:
        x: input of shape ``(B, C, H, W)``.
        weight: ``(C, 1, K, K)``, PyTorch's layout for a convolution with ``groups = C``.
        bias: optional ``(C,)``.
        stride: step between output positions (same in both directions).
        padding: zeros added on each side (same in both directions).

    Returns:
        ``(B, C, H_out, W_out)`` with ``H_out = (H + 2 padding - K) // stride + 1``.

    Raises:
        ValueError: a weight that is not ``(C, 1, K, K)`` or an input with the wrong channel count.
    """
    if weight.dim() != 4 or weight.shape[1] != 1:
        raise ValueError(f"depthwise weight must have shape (C, 1, K, K), got {tuple(weight.shape)}; "
                         "a depthwise convolution has one K x K kernel per channel.")
    channels, _, kernel_h, kernel_w = weight.shape
    _check_feature_map(x, channels, "depthwise_conv2d")
    x = F.pad(x, (padding, padding, padding, padding))  # (B, C, H + 2p, W + 2p)
    out_h = (x.shape[2] - kernel_h) // stride + 1
    out_w = (x.shape[3] - kernel_w) // stride + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"input of spatial size {tuple(x.shape[2:])} (after padding) is smaller than "
                         f"the {kernel_h}x{kernel_w} kernel; pad more or use a larger input.")
    out = x.new_zeros(x.shape[0], channels, out_h, out_w)  # (B, C, H_out, W_out)
    for u in range(kernel_h):
        for v in range(kernel_w):
            window = x[:, :, u:u + stride * (out_h - 1) + 1:stride,
                       v:v + stride * (out_w - 1) + 1:stride]  # (B, C, H_out, W_out)
            out = out + weight[:, 0, u, v].reshape(1, channels, 1, 1) * window  # (1, C, 1, 1) bcast
    if bias is not None:
        out = out + bias.reshape(1, channels, 1, 1)
    return out


def pointwise_conv2d(x: torch.Tensor, weight: torch.Tensor,
                     bias: torch.Tensor | None = None) -> torch.Tensor:
    """A ``1 x 1`` convolution: the same linear map of the ``C`` channels at every pixel.

    Args:
        x: input of shape ``(B, C, H, W)``.
        weight: ``(N, C, 1, 1)`` (``nn.Conv2d``'s layout) or ``(N, C)``.
        bias: optional ``(N,)``.

    Returns:
        ``(B, N, H, W)``; equals ``F.conv2d(x, weight, bias)``.
    """
    matrix = weight.reshape(weight.shape[0], -1)  # (N, C)
    _check_feature_map(x, matrix.shape[1], "pointwise_conv2d")
    out = torch.einsum("nc,bchw->bnhw", matrix, x)  # (B, N, H, W)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out


class DepthwiseSeparableConv2d(nn.Module):
    """Depthwise ``K x K`` convolution followed by a pointwise ``1 x 1`` convolution.

    The bare factorisation, with nothing in between; MobileNet inserts batch normalisation and a
    ReLU after each of the two (see :mod:`companion.cnn.mobilenet`).

    Args:
        in_channels: ``M``, channels of the input.
        out_channels: ``N``, channels of the output.
        kernel_size: ``K`` of the depthwise kernel.
        stride: stride of the depthwise convolution.
        padding: zero padding of the depthwise convolution.
        bias: whether both convolutions have a bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, bias: bool = False) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, stride, padding,
                                   groups=in_channels, bias=bias)  # weight (M, 1, K, K)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)  # weight (N, M, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, M, H, W) -> (B, N, H_out, W_out)``."""
        return self.pointwise(self.depthwise(x))


class ConvCost(NamedTuple):
    """Weights and multiply-adds of one layer on one image (biases and normalisation excluded)."""

    parameters: int
    mult_adds: int


def standard_conv_cost(in_channels: int, out_channels: int, kernel_size: int,
                       output_size: int) -> ConvCost:
    """Cost of a ``K x K`` convolution from ``M`` to ``N`` channels on a ``D_F x D_F`` output.

    Parameters ``K^2 M N``; multiply-adds ``K^2 M N D_F^2`` (Howard et al., 2017, eq. 2).
    """
    parameters = kernel_size ** 2 * in_channels * out_channels
    return ConvCost(parameters, parameters * output_size ** 2)


def depthwise_separable_cost(in_channels: int, out_channels: int, kernel_size: int,
                             output_size: int) -> ConvCost:
    """Cost of the depthwise (``K^2 M``) plus pointwise (``M N``) factorisation (eq. 4)."""
    parameters = kernel_size ** 2 * in_channels + in_channels * out_channels
    return ConvCost(parameters, parameters * output_size ** 2)


def separable_cost_ratio(out_channels: int, kernel_size: int) -> float:
    """``1/N + 1/K^2``: separable over standard cost, for parameters and multiply-adds alike."""
    return 1.0 / out_channels + 1.0 / kernel_size ** 2


def compose_separable(depthwise_weight: torch.Tensor, pointwise_weight: torch.Tensor) -> torch.Tensor:
    """The standard-convolution kernel that computes depthwise-then-pointwise in one step.

    ``W[n, m, u, v] = P[n, m] D[m, u, v]``: for each input channel ``m`` the ``(N, K*K)`` slice of
    ``W`` is the outer product of a column of ``P`` and the flattened kernel ``D[m]``, so it has
    rank at most one. A general ``W`` has rank up to ``min(N, K^2)`` per slice, which is why the
    factorisation has less capacity.

    Args:
        depthwise_weight: ``(M, 1, K, K)``.
        pointwise_weight: ``(N, M, 1, 1)``.

    Returns:
        ``(N, M, K, K)`` such that ``F.conv2d(x, W, stride=s, padding=p)`` equals the separable
        convolution with the same stride and padding (without biases).
    """
    depthwise = depthwise_weight[:, 0]  # (M, K, K)
    pointwise = pointwise_weight.reshape(pointwise_weight.shape[0], -1)  # (N, M)
    if pointwise.shape[1] != depthwise.shape[0]:
        raise ValueError(f"pointwise weight reads {pointwise.shape[1]} channels but the depthwise "
                         f"weight has {depthwise.shape[0]}; they must agree.")
    return pointwise[:, :, None, None] * depthwise[None]  # (N, M, 1, 1) * (1, M, K, K)


def nearest_separable(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The depthwise separable convolution closest to a standard kernel (Frobenius norm).

    Each input channel's ``(N, K*K)`` slice is replaced by its best rank-one approximation, the
    leading singular triple (Eckart-Young); the slices are independent, so this is optimal overall.

    Args:
        weight: standard convolution kernel ``(N, M, K, K)``.

    Returns:
        ``(depthwise_weight, pointwise_weight)`` of shapes ``(M, 1, K, K)`` and ``(N, M, 1, 1)``;
        :func:`compose_separable` of them equals ``weight`` exactly when every slice has rank one.
    """
    if weight.dim() != 4:
        raise ValueError(f"expected a convolution kernel (N, M, K, K), got shape {tuple(weight.shape)}.")
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    slices = weight.permute(1, 0, 2, 3).reshape(in_channels, out_channels, kernel_h * kernel_w)
    # slices: (M, N, K*K); batched SVD over the M input channels
    u, s, vh = torch.linalg.svd(slices, full_matrices=False)  # (M, N, r), (M, r), (M, r, K*K)
    pointwise = (u[:, :, 0] * s[:, :1]).transpose(0, 1)  # (M, N) -> (N, M)
    depthwise = vh[:, 0].reshape(in_channels, 1, kernel_h, kernel_w)  # (M, 1, K, K)
    return depthwise, pointwise.reshape(out_channels, in_channels, 1, 1)
