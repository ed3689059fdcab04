"""The dataset registry: every dataset the book uses, by name, behind one function.

Real datasets are looked up offline first and downloaded (verified) only when missing. Synthetic
datasets carry names of their own (``synthetic-xor``), so generated data can never pass for a
real benchmark.

Taught in: book/01_foundations/02_mlp_fashion_mnist.ipynb.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from torch.utils.data import Dataset

ENV_VAR = "COMPANION_DATA"


def data_root(root: str | Path | None = None) -> Path:
    """Where downloaded datasets live: ``root``, else ``$COMPANION_DATA``, else ``~/.cache/companion``."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return Path.home() / ".cache" / "companion"


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    splits: tuple[str, ...]
    synthetic: bool
    loader: Callable[..., Dataset]  # loader(split, root, download, **options)
    locator: Callable[[Path], str | None]  # where it is found offline, or None


def _fashion_loader(split: str, root: Path, download: bool) -> Dataset:
    from companion.data import fashion_mnist

    return fashion_mnist.load(split, root, download_if_missing=download)


def _fashion_locator(root: Path) -> str | None:
    from companion.data import fashion_mnist

    found = fashion_mnist.locate(root)
    return None if found is None else str(next(iter(found.values())).parent)


def _synthetic(generate_name: str, registered_name: str) -> Callable[..., Dataset]:
    def loader(split: str, root: Path, download: bool, **options) -> Dataset:
        from companion.data import synthetic

        seed = options.pop("seed", 0) + (0 if split == "train" else 10_000)  # disjoint test draw
        points, labels = getattr(synthetic, generate_name)(seed=seed, **options)
        return synthetic.as_dataset(points, labels, name=f"{registered_name}/{split}")

    return loader


def _cifar10_loader(split: str, root: Path, download: bool) -> Dataset:
    from companion.data import cifar10

    return cifar10.load(split, root, download_if_missing=download)


def _cifar10_locator(root: Path) -> str | None:
    from companion.data import cifar10

    return cifar10.find_offline(root)  # the extracted folder, else a hand-placed archive, else None


_REGISTRY: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> None:
    if info.name in _REGISTRY:
        raise ValueError(f"dataset {info.name!r} is registered twice")
    _REGISTRY[info.name] = info


register(DatasetInfo("fashion-mnist", "Fashion-MNIST: 60k train + 10k test 28x28 grey images, 10 classes",
                     ("train", "test"), False, _fashion_loader, _fashion_locator))
register(DatasetInfo("cifar10", "CIFAR-10: 50k train + 10k test 32x32 colour images, 10 classes",
                     ("train", "test"), False, _cifar10_loader, _cifar10_locator))
register(DatasetInfo("synthetic-xor", "generated: 2-D points around the unit square's corners, XOR labels",
                     ("train", "test"), True, _synthetic("xor_points", "synthetic-xor"), lambda root: "generated"))
register(DatasetInfo("synthetic-blobs", "generated: 2-D Gaussian clusters, one per class",
                     ("train", "test"), True, _synthetic("gaussian_blobs", "synthetic-blobs"),
                     lambda root: "generated"))


def list_datasets() -> list[str]:
    """Names of every registered dataset."""
    return sorted(_REGISTRY)


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry for ``name``; an unknown name is an error listing the known ones."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; known datasets are: {', '.join(list_datasets())}.")
    return _REGISTRY[name]


def find_offline(name: str, root: str | Path | None = None) -> str | None:
    """Where ``name`` is available without a download (a folder, or "generated"), else None."""
    return dataset_info(name).locator(data_root(root))


def get_dataset(name: str, split: str = "train", *, root: str | Path | None = None,
                download: bool = True, **options) -> Dataset:
    """Load a registered dataset.

    Args:
        name: a name from :func:`list_datasets`, e.g. ``"fashion-mnist"``.
        split: ``"train"`` or ``"test"``.
        root: data folder for downloads (default :func:`data_root`).
        download: fetch a missing real dataset (verified by checksum); False makes a missing
            dataset an error at once.
        **options: generator options for synthetic datasets (``size``, ``noise``, ``seed``...).

    Returns:
        A map-style dataset; the built-in ones are :class:`~companion.data.loaders.ArrayDataset`.

    Raises:
        ValueError: unknown name or split.
        FileNotFoundError: a real dataset is missing and could not be downloaded; the message
            says how to get it.
    """
    info = dataset_info(name)
    if split not in info.splits:
        raise ValueError(f"dataset {name!r} has no split {split!r}; its splits are: {', '.join(info.splits)}.")
    if options and not info.synthetic:
        raise TypeError(f"dataset {name!r} takes no options, got {sorted(options)}")
    return info.loader(split, data_root(root), download, **options)
