"""Fashion-MNIST: the Debian copy, the torchvision layout, verified downloads, and clear errors."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from companion.data import fashion_mnist, get_dataset


@pytest.fixture()
def no_debian(monkeypatch, tmp_path):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-such-folder")


def test_loads_the_debian_copy(fashion_mnist_available):
    train = get_dataset("fashion-mnist", "train", download=False)
    test = get_dataset("fashion-mnist", "test", download=False)
    assert len(train) == 60_000 and len(test) == 10_000
    assert train.images.shape == (60_000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.classes[9] == "Ankle boot"


def test_equals_torchvision(fashion_mnist_available, tmp_path):
    torchvision = pytest.importorskip("torchvision")
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    import gzip

    for gz in fashion_mnist_available.glob("t10k-*.gz"):
        (raw / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (raw / stem).write_bytes(b"")  # torchvision only checks that files exist for the split it skips
    reference = torchvision.datasets.FashionMNIST(str(tmp_path), train=False, download=False)
    ours = get_dataset("fashion-mnist", "test", download=False)
    assert torch.equal(ours.images[:, 0], reference.data)
    assert torch.equal(ours.labels, reference.targets)


def test_missing_offline_is_a_clear_error(no_debian, tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        get_dataset("fashion-mnist", root=tmp_path, download=False)
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message and "FashionMNIST/raw" in message


def test_failed_download_is_a_clear_error_and_writes_nothing(no_debian, tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "MIRRORS", ("file:///nonexistent-mirror/",))
    with pytest.raises(FileNotFoundError, match="downloading it failed"):
        fashion_mnist.load("test", tmp_path / "data", download_if_missing=True,
                           mirrors=("file:///nonexistent-mirror/",))
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    assert not raw.exists() or list(raw.iterdir()) == []


def test_download_verifies_checksums_and_lands_in_torchvision_layout(no_debian, tmp_path, fashion_mnist_available):
    mirror = tmp_path / "mirror"
    shutil.copytree(fashion_mnist_available, mirror)
    root = tmp_path / "data"
    test = fashion_mnist.load("test", root, download_if_missing=True, mirrors=(mirror.as_uri() + "/",))
    assert len(test) == 10_000
    assert sorted(p.name for p in (root / "FashionMNIST" / "raw").iterdir()) == sorted(
        p.name for p in fashion_mnist_available.iterdir())
    # Second call finds the files offline, with the download path disabled.
    assert len(fashion_mnist.load("train", root, download_if_missing=False)) == 60_000


def test_corrupt_mirror_is_rejected_and_nothing_is_saved(no_debian, tmp_path, fashion_mnist_available):
    import gzip

    mirror = tmp_path / "mirror"
    shutil.copytree(fashion_mnist_available, mirror)
    labels = mirror / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(labels.read_bytes()))
    content[-1] = (content[-1] + 1) % 10  # one wrong label
    labels.write_bytes(gzip.compress(bytes(content)))
    root = tmp_path / "data"
    with pytest.raises(FileNotFoundError, match="checksum"):
        fashion_mnist.load("test", root, download_if_missing=True, mirrors=(mirror.as_uri() + "/",))
    raw = root / "FashionMNIST" / "raw"
    assert not (raw / "t10k-labels-idx1-ubyte.gz").exists()
    assert not [p for p in raw.iterdir() if p.name.endswith(".part")]


def test_a_modified_local_copy_is_refused(no_debian, tmp_path, fashion_mnist_available):
    raw = tmp_path / "FashionMNIST" / "raw"
    shutil.copytree(fashion_mnist_available, raw)
    import gzip

    images = raw / "t10k-images-idx3-ubyte.gz"
    content = bytearray(gzip.decompress(images.read_bytes()))
    content[100] ^= 0xFF
    images.write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(ValueError, match="does not match the published"):
        fashion_mnist.load("test", tmp_path, download_if_missing=False)
    assert np.frombuffer(gzip.decompress(images.read_bytes()), np.uint8)[100] == content[100]  # untouched
