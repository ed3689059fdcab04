"""2-D convolution from scratch: explicit loops, im2col, output sizes and receptive fields.

What deep-learning libraries call "convolution" is, strictly, *cross-correlation*: the kernel slides
over the input without being flipped,

``out[b, o, i, j] = bias[o] + sum_{c, u, v} weight[o, c, u, v] * x[b, c, s*i + d*u, s*j + d*v]``

(with ``x`` zero-padded, ``s`` the stride and ``d`` the dilation). Flipping the kernel would give the
convolution of signal processing; since the kernel is learned, the two are equally expressive.

Two implementations compute exactly what ``torch.nn.functional.conv2d`` computes (checked in
``tests/cnn/test_conv.py`` in float64):

- :func:`conv2d_loops` spells the sum out, one output value at a time: readable, slow, for small
  inputs only.
- :func:`conv2d_im2col` copies every receptive-field patch into a column (``F.unfold``) and turns
  the whole convolution into one batched matrix product, the way early GPU libraries did it.

Taught in: book/02_cnn/01_convolution.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

IntPair = int | tuple[int, int]


def _pair(value: IntPair, name: str, minimum: int) -> tuple[int, int]:
    """Turn an int or a pair of ints into a pair, checking that both are at least ``minimum``."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints (height, width), got {value!r}.")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum} in both directions, got {value!r}.")
    return pair  # type: ignore[return-value]


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> int:
    """Output length of a convolution or pooling along one spatial axis.

    ``floor((size + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1``: the number of
    positions a window of effective width ``dilation * (kernel - 1) + 1`` can take in the padded
    input when it moves ``stride`` pixels at a time.

    Args:
        size: input length (height or width) in pixels.
        kernel: kernel length along that axis.
        stride: step between neighbouring windows.
        padding: zeros added on each side.
        dilation: spacing between kernel taps (1: no gaps).

    Returns:
        The output length, at least 1.

    Raises:
        ValueError: a non-positive size, kernel, stride or dilation, negative padding, or a dilated
            kernel wider than the padded input.
    """
    if size < 1 or kernel < 1 or stride < 1 or dilation < 1 or padding < 0:
        raise ValueError(f"need size, kernel, stride, dilation >= 1 and padding >= 0, got size={size}, "
                         f"kernel={kernel}, stride={stride}, padding={padding}, dilation={dilation}.")
    effective_kernel = dilation * (kernel - 1) + 1
    if effective_kernel > size + 2 * padding:
        raise ValueError(f"the kernel (effective width {effective_kernel} with dilation {dilation}) is "
                         f"larger than the padded input ({size} + 2*{padding}); use a smaller kernel "
                         f"or dilation, or more padding.")
    return (size + 2 * padding - effective_kernel) // stride + 1


def _check_conv_arguments(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                          stride: IntPair, padding: IntPair, dilation: IntPair, groups: int):
    """Validate the arguments of a convolution; return the pairs and the output size."""
    if x.dim() != 4:
        raise ValueError(f"input must be 4-D (B, C, H, W), got shape {tuple(x.shape)}; "
                         f"add a batch dimension with x.unsqueeze(0).")
    if weight.dim() != 4:
        raise ValueError(f"weight must be 4-D (C_out, C_in / groups, kH, kW), got shape "
                         f"{tuple(weight.shape)}.")
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}.")
    in_channels, out_channels = x.shape[1], weight.shape[0]
    if in_channels % groups != 0:
        raise ValueError(f"input channels ({in_channels}) must be divisible by groups ({groups}); "
                         f"choose groups among the divisors of {in_channels}.")
    if out_channels % groups != 0:
        raise ValueError(f"output channels (weight.shape[0] = {out_channels}) must be divisible by "
                         f"groups ({groups}); use a multiple of {groups} output channels.")
    if weight.shape[1] != in_channels // groups:
        raise ValueError(f"weight.shape[1] must be in_channels / groups = {in_channels} / {groups} = "
                         f"{in_channels // groups}, got weight shape {tuple(weight.shape)}; create "
                         f"the weight as (C_out, C_in // groups, kH, kW).")
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(f"bias must have shape (C_out,) = ({out_channels},), got {tuple(bias.shape)}.")
    stride_hw = _pair(stride, "stride", 1)
    padding_hw = _pair(padding, "padding", 0)
    dilation_hw = _pair(dilation, "dilation", 1)
    kernel_hw = (weight.shape[2], weight.shape[3])
    output_hw = tuple(
        conv_output_size(x.shape[2 + axis], kernel_hw[axis], stride_hw[axis], padding_hw[axis],
                         dilation_hw[axis])
        for axis in range(2)
    )
    return stride_hw, padding_hw, dilation_hw, output_hw


def conv2d_loops(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1,
                 groups: int = 1) -> torch.Tensor:
    """2-D cross-correlation as explicit loops over images, output channels and output pixels.

    Same arguments and result as ``torch.nn.functional.conv2d`` (numeric padding only). Each output
    value is the sum of an elementwise product between one kernel and one input patch. About
    ``B * C_out * H_out * W_out`` Python iterations: use it on small inputs.

    Args:
        x: input, ``(B, C_in, H, W)``.
        weight: kernels, ``(C_out, C_in / groups, kH, kW)``.
        bias: optional, ``(C_out,)``.
        stride: step of the window, an int or ``(sH, sW)``.
        padding: zeros added on each side, an int or ``(pH, pW)``.
        dilation: spacing between kernel taps, an int or ``(dH, dW)``.
        groups: the channels are split into this many independent groups; output channel ``o``
            only sees the input channels of its group. ``groups == C_in`` is a depthwise convolution.

    Returns:
        ``(B, C_out, H_out, W_out)``, sizes from :func:`conv_output_size`.

    Raises:
        ValueError: shapes that do not fit together (see the message for the fix).
    """
    (s_h, s_w), (p_h, p_w), (d_h, d_w), (out_h, out_w) = _check_conv_arguments(
        x, weight, bias, stride, padding, dilation, groups)
    batch, in_channels = x.shape[:2]
    out_channels, in_per_group, k_h, k_w = weight.shape
    out_per_group = out_channels // groups
    padded = F.pad(x, (p_w, p_w, p_h, p_h))  # (B, C_in, H + 2pH, W + 2pW)
    out = x.new_zeros(batch, out_channels, out_h, out_w)
    for b in range(batch):
        for o in range(out_channels):
            first = (o // out_per_group) * in_per_group  # first input channel of o's group
            for i in range(out_h):
                for j in range(out_w):
                    top, left = i * s_h, j * s_w
                    patch = padded[b, first:first + in_per_group,
                                   top:top + d_h * (k_h - 1) + 1:d_h,
                                   left:left + d_w * (k_w - 1) + 1:d_w]  # (C_in / groups, kH, kW)
                    out[b, o, i, j] = (patch * weight[o]).sum()
            if bias is not None:
                out[b, o] += bias[o]
    return out


def conv2d_im2col(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1,
                  groups: int = 1) -> torch.Tensor:
    """2-D cross-correlation as im2col (``F.unfold``) followed by one batched matrix product.

    ``F.unfold`` copies each of the ``L = H_out * W_out`` input patches into a column of length
    ``C_in * kH * kW`` (channel-major, then kernel row, then kernel column: the same order as a
    flattened kernel). Multiplying by the ``(C_out, C_in * kH * kW)`` weight matrix computes every
    output at once; groups become a batch dimension of the product. The patches cost
    ``kH * kW`` times the input's memory.

    Args:
        x: input, ``(B, C_in, H, W)``.
        weight: kernels, ``(C_out, C_in / groups, kH, kW)``.
        bias: optional, ``(C_out,)``.
        stride: step of the window, an int or ``(sH, sW)``.
        padding: zeros added on each side, an int or ``(pH, pW)``.
        dilation: spacing between kernel taps, an int or ``(dH, dW)``.
        groups: number of independent channel groups (``C_in`` for depthwise).

    Returns:
        ``(B, C_out, H_out, W_out)``, equal to ``F.conv2d`` with the same arguments.

    Raises:
        ValueError: shapes that do not fit together (see the message for the fix).
    """
    stride_hw, padding_hw, dilation_hw, (out_h, out_w) = _check_conv_arguments(
        x, weight, bias, stride, padding, dilation, groups)
    batch = x.shape[0]
    out_channels, in_per_group, k_h, k_w = weight.shape
    columns = F.unfold(x, kernel_size=(k_h, k_w), dilation=dilation_hw, padding=padding_hw,
                       stride=stride_hw)  # (B, C_in * kH * kW, L)
    columns = columns.reshape(batch, groups, in_per_group * k_h * k_w,
                              out_h * out_w)  # (B, G, C_in/G * kH * kW, L)
    kernels = weight.reshape(groups, out_channels // groups,
                             in_per_group * k_h * k_w)  # (G, C_out/G, C_in/G * kH * kW)
    out = kernels @ columns  # (G, C_out/G, K) @ (B, G, K, L) -> (B, G, C_out/G, L)
    out = out.reshape(batch, out_channels, out_h, out_w)  # (B, C_out, H_out, W_out)
    if bias is not None:
        out = out + bias.reshape(1, out_channels, 1, 1)  # broadcast over (B, ., H_out, W_out)
    return out


class ReceptiveField(NamedTuple):
    """Receptive field of one output unit of a layer stack, measured in input pixels."""

    size: int  # side of the input window one output unit depends on
    jump: int  # distance in input pixels between neighbouring output units (product of strides)


def receptive_field(layers: Sequence[tuple[int, ...]]) -> ReceptiveField:
    """Receptive field size and jump of a stack of convolution or pooling layers (one axis).

    With ``r_0 = 1`` and ``j_0 = 1`` (one input pixel), layer ``l`` with kernel ``k``, stride ``s``
    and dilation ``d`` gives ``r_l = r_{l-1} + d (k - 1) j_{l-1}`` and ``j_l = s j_{l-1}``: each
    extra kernel tap reaches one previous-layer unit further, which is ``j_{l-1}`` input pixels
    away. Padding does not change the size (it only moves the window).

    Args:
        layers: one tuple per layer, input first: ``(kernel, stride)`` or
            ``(kernel, stride, dilation)``.

    Returns:
        ``ReceptiveField(size, jump)``; an empty stack gives ``(1, 1)``.

    Raises:
        ValueError: a layer that is not 2 or 3 positive ints.
    """
    size, jump = 1, 1
    for index, layer in enumerate(layers):
        layer = tuple(layer)
        if len(layer) not in (2, 3) or not all(isinstance(v, int) and v >= 1 for v in layer):
            raise ValueError(f"layer {index} must be (kernel, stride) or (kernel, stride, dilation) "
                             f"with positive ints, got {layer!r}.")
        kernel, stride = layer[0], layer[1]
        dilation = layer[2] if len(layer) == 3 else 1
        size += dilation * (kernel - 1) * jump
        jump *= stride
    return ReceptiveField(size, jump)
