import random

import numpy as np
import pytest
import torch

from companion.utils import get_device, seed_everything


def test_get_device_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_device() == torch.device("cpu")
    assert get_device("cpu") == torch.device("cpu")


def test_asking_for_missing_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        get_device("cuda")


def test_seed_everything_repeats_every_generator():
    def draw():
        generator = seed_everything(123)
        return (random.random(), np.random.rand(), torch.rand(1).item(),
                torch.rand(1, generator=generator).item())

    assert draw() == draw()
    seed_everything(124)
    assert torch.rand(1).item() != draw()[2]
