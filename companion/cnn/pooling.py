"""Max and average pooling from scratch, with the semantics of PyTorch's ``F.max_pool2d`` and
``F.avg_pool2d``.

Pooling slides a window over each channel separately and summarises it by its maximum or its mean;
it has no parameters. Both functions build the windows with ``Tensor.unfold`` (a strided view,
no copy) and reduce over the last two axes. Only ``ceil_mode=False`` (PyTorch's default) is
implemented: the windows never leave the padded input.

Taught in: book/02_cnn/01_convolution.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from companion.cnn.conv import IntPair, _pair, conv_output_size


def _windows(x: torch.Tensor, kernel_size: IntPair, stride: IntPair | None, padding: IntPair,
             fill: float) -> torch.Tensor:
    """Pad ``x`` with ``fill`` and return all pooling windows, ``(B, C, H_out, W_out, kH, kW)``."""
    if x.dim() != 4:
        raise ValueError(f"input must be 4-D (B, C, H, W), got shape {tuple(x.shape)}; "
                         f"add a batch dimension with x.unsqueeze(0).")
    k_h, k_w = _pair(kernel_size, "kernel_size", 1)
    s_h, s_w = _pair(kernel_size if stride is None else stride, "stride", 1)
    p_h, p_w = _pair(padding, "padding", 0)
    if 2 * p_h > k_h or 2 * p_w > k_w:
        raise ValueError(f"padding ({p_h}, {p_w}) must be at most half the kernel size ({k_h}, {k_w}), "
                         f"as in PyTorch, so that no window is only padding; reduce the padding.")
    for axis in range(2):  # raises a clear error when the window is larger than the padded input
        conv_output_size(x.shape[2 + axis], (k_h, k_w)[axis], (s_h, s_w)[axis], (p_h, p_w)[axis])
    padded = F.pad(x, (p_w, p_w, p_h, p_h), value=fill)  # (B, C, H + 2pH, W + 2pW)
    return padded.unfold(2, k_h, s_h).unfold(3, k_w, s_w)  # (B, C, H_out, W_out, kH, kW)


def max_pool2d(x: torch.Tensor, kernel_size: IntPair, stride: IntPair | None = None,
               padding: IntPair = 0) -> torch.Tensor:
    """Maximum over each ``kH x kW`` window of each channel.

    Padding counts as ``-inf``, so it never wins the maximum.

    Args:
        x: input, ``(B, C, H, W)``.
        kernel_size: window size, an int or ``(kH, kW)``.
        stride: step between windows; None means ``kernel_size`` (non-overlapping windows).
        padding: padding on each side, at most half the kernel size.

    Returns:
        ``(B, C, H_out, W_out)``, equal to ``F.max_pool2d`` with the same arguments.

    Raises:
        ValueError: a non-4-D input, too much padding, or a window larger than the padded input.
    """
    windows = _windows(x, kernel_size, stride, padding, fill=float("-inf"))
    return windows.amax(dim=(-2, -1))  # (B, C, H_out, W_out)


def avg_pool2d(x: torch.Tensor, kernel_size: IntPair, stride: IntPair | None = None,
               padding: IntPair = 0, count_include_pad: bool = True) -> torch.Tensor:
    """Mean over each ``kH x kW`` window of each channel.

    Padding counts as zeros. With ``count_include_pad=True`` (PyTorch's default) every window is
    divided by ``kH * kW``, padded positions included, so border outputs are pulled towards zero;
    with False, each window is divided by its number of real input pixels.

    Args:
        x: input, ``(B, C, H, W)``.
        kernel_size: window size, an int or ``(kH, kW)``.
        stride: step between windows; None means ``kernel_size``.
        padding: zero padding on each side, at most half the kernel size.
        count_include_pad: whether padded zeros count in the divisor.

    Returns:
        ``(B, C, H_out, W_out)``, equal to ``F.avg_pool2d`` with the same arguments.

    Raises:
        ValueError: a non-4-D input, too much padding, or a window larger than the padded input.
    """
    sums = _windows(x, kernel_size, stride, padding, fill=0.0).sum(dim=(-2, -1))  # (B, C, H_out, W_out)
    if count_include_pad:
        k_h, k_w = _pair(kernel_size, "kernel_size", 1)
        return sums / (k_h * k_w)
    ones = torch.ones_like(x[:1, :1])  # (1, 1, H, W): 1 on real pixels, 0 on padding after _windows
    counts = _windows(ones, kernel_size, stride, padding, fill=0.0).sum(dim=(-2, -1))  # (1, 1, H_out, W_out)
    return sums / counts
