"""What a network costs: parameters, floating-point operations and latency.

Papers report cost in two currencies that are easy to mix up. ``count_flops`` counts floating-point
operations of the matrix multiplications and convolutions (one multiply-add = 2 FLOPs), as
``torch.utils.flop_counter`` does; ``count_multiply_adds`` halves that, which is the unit most CNN
papers call "FLOPs" or "mult-adds" (ResNet-50's "3.8 x 10^9 FLOPs", MobileNet's 569 million
mult-adds). Element-wise work (batch norm, activations, pooling, additions) is not counted; it is
small next to the convolutions but not free, which is one reason latency must be measured too.

Taught in: book/02_cnn/11_comparison.ipynb.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (shared parameters counted once).

    Args:
        model: any module.
        trainable_only: count only parameters with ``requires_grad``.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _example_input(model: nn.Module, input_shape: tuple[int, ...], batch_size: int) -> torch.Tensor:
    if len(input_shape) != 3 or any(int(s) <= 0 for s in input_shape):
        raise ValueError(f"input_shape={tuple(input_shape)} must be one example's (C, H, W), e.g. (3, 224, 224); "
                         "the batch dimension is added from batch_size.")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1.")
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    return torch.randn(batch_size, *input_shape, device=device, dtype=dtype)


def count_flops(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1) -> int:
    """FLOPs of one forward pass (matmuls and convolutions; a multiply-add counts 2).

    The model is run once in eval mode under ``torch.no_grad`` on random input; its mode is restored.

    Args:
        model: the network.
        input_shape: one example's ``(C, H, W)``.
        batch_size: examples per forward pass.

    Returns:
        Total FLOPs for the whole batch.
    """
    inputs = _example_input(model, input_shape, batch_size)  # (B, C, H, W)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def count_multiply_adds(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1) -> int:
    """Multiply-adds of one forward pass: ``count_flops(...) // 2``, the unit most CNN papers report."""
    return count_flops(model, input_shape, batch_size) // 2


def cpu_latency(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1, repeats: int = 20,
                warmup: int = 3) -> float:
    """Median wall-clock seconds of one eval-mode forward pass.

    Timing depends on the machine and its load; report it with the machine, never as a constant.

    Args:
        model: the network (measured on the device its parameters are on).
        input_shape: one example's ``(C, H, W)``.
        batch_size: examples per forward pass (1 = the latency a single request sees).
        repeats: timed passes; the median is returned.
        warmup: untimed passes first (allocator and kernel selection).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats={repeats} must be >= 1 and warmup={warmup} >= 0.")
    inputs = _example_input(model, input_shape, batch_size)
    synchronize = torch.cuda.synchronize if inputs.is_cuda else (lambda: None)
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.inference_mode():
            for step in range(warmup + repeats):
                synchronize()
                start = time.perf_counter()
                model(inputs)
                synchronize()
                if step >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return statistics.median(times)
