"""Shared fixtures. Tests are small, seeded and CPU-only unless marked ``gpu``."""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def fashion_mnist_available():
    """The real Fashion-MNIST must be installed for these tests; a missing copy fails loudly."""
    from companion.data.fashion_mnist import DEBIAN_DIR

    if not DEBIAN_DIR.is_dir():
        pytest.fail(f"Fashion-MNIST is not installed in {DEBIAN_DIR}: run `sudo apt-get install "
                    "dataset-fashion-mnist` (or `make system-deps`); .ci/run does this.")
    return DEBIAN_DIR
