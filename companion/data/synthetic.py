"""Generated datasets. They have their own names and are never substituted for real data."""

from __future__ import annotations

import torch

from companion.data.loaders import ArrayDataset


def xor_points(size: int = 200, noise: float = 0.15, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Points scattered around the four corners of the unit square, labelled by XOR.

    Args:
        size: number of points.
        noise: standard deviation of the Gaussian jitter around each corner.
        seed: seed of the generator.

    Returns:
        ``(size, 2)`` float32 points and ``(size,)`` int64 labels (1 where exactly one
        coordinate's corner is 1).
    """
    generator = torch.Generator().manual_seed(seed)
    corners = torch.randint(0, 2, (size, 2), generator=generator)  # (N, 2) in {0, 1}
    labels = (corners[:, 0] ^ corners[:, 1]).long()  # (N,)
    points = corners.float() + noise * torch.randn(size, 2, generator=generator)
    return points, labels


def gaussian_blobs(size: int = 300, num_classes: int = 3, spread: float = 0.6,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Isotropic Gaussian clusters in 2-D whose centres lie on a circle of radius 2.

    Returns:
        ``(size, 2)`` float32 points and ``(size,)`` int64 labels.
    """
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (size,), generator=generator)
    angles = 2 * torch.pi * torch.arange(num_classes) / num_classes  # (K,)
    centres = 2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)  # (K, 2)
    points = centres[labels] + spread * torch.randn(size, 2, generator=generator)
    return points, labels


def as_dataset(points: torch.Tensor, labels: torch.Tensor, name: str) -> ArrayDataset:
    classes = [str(k) for k in range(int(labels.max()) + 1)]
    return ArrayDataset(points, labels, classes=classes, name=name)
