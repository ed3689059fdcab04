"""In-memory datasets and the one way the book builds DataLoaders.

Small image datasets (Fashion-MNIST is 47 MB as bytes) fit in memory as one tensor. Indexing a
whole mini-batch at once (``__getitems__``, which ``DataLoader`` uses when a dataset defines it) is
far faster than collating 256 single images, which matters on a 2-core machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ArrayDataset(Dataset):
    """Images and labels held as tensors, with an optional batch transform.

    Args:
        images: ``(N, C, H, W)`` tensor (uint8 pixels are scaled to float in ``[0, 1]``).
        labels: ``(N,)`` int64 class indices.
        classes: class names, ``classes[k]`` for label ``k``.
        transform: optional function applied to a float batch ``(B, C, H, W)``.
        name: the dataset's name, for ``repr`` and error messages.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str] = (),
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, name: str = "") -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels; they must match.")
        self.images = images
        self.labels = labels.long()
        self.classes = list(classes)
        self.transform = transform
        self.name = name

    def __len__(self) -> int:
        return self.images.shape[0]

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        return self.transform(images) if self.transform is not None else images

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self._prepare(self.images[index : index + 1])[0]  # (C, H, W)
        return image, self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self._prepare(self.images[index]), self.labels[index]  # (B, C, H, W), (B,)

    def subset(self, size: int | None, seed: int = 0) -> "ArrayDataset":
        """A random subset of ``size`` examples (all of them when ``size`` is None or too large)."""
        if size is None or size >= len(self):
            return self
        generator = torch.Generator().manual_seed(seed)
        index = torch.randperm(len(self), generator=generator)[:size]
        return ArrayDataset(self.images[index], self.labels[index], self.classes, self.transform, self.name)

    def __repr__(self) -> str:
        return f"ArrayDataset(name={self.name!r}, size={len(self)}, image_shape={tuple(self.images.shape[1:])})"


def _keep_batch(batch):
    """Collate function for datasets that already return whole batches."""
    return batch


def _batches_itself(dataset: Dataset) -> bool:
    """Whether ``dataset.__getitems__`` returns a whole batch (a ``Subset`` only if what it wraps does)."""
    while isinstance(dataset, torch.utils.data.Subset):
        dataset = dataset.dataset  # Subset.__getitems__ falls back to a list of items otherwise
    return hasattr(dataset, "__getitems__")


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False, num_workers: int = 0) -> DataLoader:
    """Build a DataLoader; under ``torch.distributed`` each process gets its own shard.

    Args:
        dataset: any map-style dataset; ones with ``__getitems__`` are batched without collation.
        batch_size: examples per batch (per process when distributed).
        shuffle: reshuffle every epoch. The order depends only on ``seed`` and the epoch number
            (``fit`` calls ``set_epoch``), so a resumed run sees the same batches.
        seed: seed of the shuffle.
        drop_last: drop the last incomplete batch.
        num_workers: worker processes.

    Returns:
        A ``torch.utils.data.DataLoader``.
    """
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    else:
        sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed)
    collate = _keep_batch if _batches_itself(dataset) else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                      num_workers=num_workers, collate_fn=collate,
                      persistent_workers=num_workers > 0)


class EpochSampler(torch.utils.data.Sampler[int]):
    """Sequential or shuffled indices whose order is a function of (seed, epoch) only.

    Like ``DistributedSampler`` with one replica: call ``set_epoch`` before each epoch.
    """

    def __init__(self, length: int, shuffle: bool, seed: int = 0) -> None:
        self.length, self.shuffle, self.seed, self.epoch = length, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.length))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())

    def __len__(self) -> int:
        return self.length
