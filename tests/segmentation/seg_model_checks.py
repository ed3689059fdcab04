"""Checks every segmentation network must pass, shared by the per-architecture test files."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_every_parameter_receives_a_gradient(model: torch.nn.Module, num_classes: int,
                                              size: tuple[int, int]) -> None:
    """One cross-entropy step on random ``(2, 3, *size)`` images: every trainable parameter's gradient
    exists, is finite and is not zero (a parameter the architecture fixes, ``requires_grad=False``,
    must get none)."""
    loss = F.cross_entropy(model(torch.rand(2, 3, *size)), torch.randint(0, num_classes, (2, *size)))
    loss.backward()
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            assert parameter.grad is None, name
            continue
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def check_channels_last_equals_contiguous(model: torch.nn.Module, size: tuple[int, int]) -> None:
    """The model (in eval mode) gives the same logits in channels_last as in the default layout."""
    x = torch.rand(2, 3, *size)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    actual = model(x.to(memory_format=torch.channels_last))
    scale = expected.abs().max()
    torch.testing.assert_close(actual / scale, expected / scale, atol=1e-5, rtol=0)
