"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 70,000 28x28 grey images of 10 clothing classes.

Found, in order: in the Debian package's folder (``apt-get install dataset-fashion-mnist``), in
the torchvision layout under the data root (``<root>/FashionMNIST/raw/``), or downloaded there.
Every file is verified against the SHA-256 of its uncompressed content.
"""

from __future__ import annotations

from pathlib import Path

import torch

from companion.data.download import DownloadError, content_sha256, download
from companion.data.idx import read_idx
from companion.data.loaders import ArrayDataset

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# SHA-256 of each file's uncompressed content.
FILES = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
SPLIT_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def torchvision_raw_dir(root: Path) -> Path:
    return Path(root) / "FashionMNIST" / "raw"


def _find_in(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def locate(root: Path, search_debian: bool = True) -> dict[str, Path] | None:
    """Return the four files from the first folder that has all of them, or None."""
    folders = ([DEBIAN_DIR] if search_debian else []) + [torchvision_raw_dir(root)]
    for folder in folders:
        found = {stem: _find_in(folder, stem) for stem in FILES}
        if all(found.values()):
            return found  # type: ignore[return-value]
    return None


def fetch(root: Path, mirrors: tuple[str, ...] = MIRRORS) -> dict[str, Path]:
    """Download the four files into the torchvision layout under ``root``."""
    target = torchvision_raw_dir(root)
    paths: dict[str, Path] = {}
    for stem, checksum in FILES.items():
        existing = _find_in(target, stem)
        if existing is not None and content_sha256(existing) == checksum:
            paths[stem] = existing
            continue
        errors = []
        for mirror in mirrors:
            try:
                paths[stem] = download(mirror + stem + ".gz", target / (stem + ".gz"), checksum)
                break
            except DownloadError as exc:
                errors.append(str(exc))
        else:
            raise DownloadError("; ".join(errors))
    return paths


def load(split: str, root: Path, download_if_missing: bool, search_debian: bool = True,
         mirrors: tuple[str, ...] = MIRRORS) -> ArrayDataset:
    """Load one split as an :class:`ArrayDataset` of ``(N, 1, 28, 28)`` uint8 images."""
    paths = locate(root, search_debian=search_debian)
    if paths is None:
        where = f"{DEBIAN_DIR} or {torchvision_raw_dir(root)}" if search_debian else str(torchvision_raw_dir(root))
        how = ("Install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), copy the four "
               f"*-ubyte.gz files into {torchvision_raw_dir(root)}, or run once with internet access.")
        if not download_if_missing:
            raise FileNotFoundError(f"Fashion-MNIST was not found in {where} and download=False. {how}")
        try:
            paths = fetch(root, mirrors)
        except DownloadError as exc:
            raise FileNotFoundError(
                f"Fashion-MNIST was not found in {where}, and downloading it failed ({exc}). {how}"
            ) from exc
    image_stem, label_stem = SPLIT_FILES[split]
    for stem in (image_stem, label_stem):
        if content_sha256(paths[stem]) != FILES[stem]:
            raise ValueError(
                f"{paths[stem]} does not match the published Fashion-MNIST file (checksum differs); "
                "delete it and fetch it again."
            )
    images = torch.from_numpy(read_idx(paths[image_stem]).copy()).unsqueeze(1)  # (N, 1, 28, 28)
    labels = torch.from_numpy(read_idx(paths[label_stem]).astype("int64"))  # (N,)
    return ArrayDataset(images, labels, classes=CLASSES, name=f"fashion-mnist/{split}")
