"""Reproducible runs."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and every GPU).

    Args:
        seed: the seed.
        deterministic: also ask PyTorch for deterministic kernels (slower on GPU; CPU kernels used
            by the book are deterministic for a fixed thread count already).

    Returns:
        A ``torch.Generator`` seeded with ``seed``, for DataLoaders and samplers.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds CUDA too
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
