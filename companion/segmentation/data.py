"""Semantic segmentation data: the synthetic scenes of Part 3 as (image, class mask) pairs.

``FashionScenes`` (``companion.detection.scenes``) stores, for every scene, an instance map (0 for the
background, ``k + 1`` for the k-th object) and each object's class. The *semantic* mask replaces every
instance id by its object's class: one integer per pixel, 0 for the background and ``1..C`` for the
classes, the format ``F.cross_entropy`` expects for ``(B, C+1, H, W)`` logits.

Taught in: book/04_segmentation/01_semantic_segmentation.ipynb (``RandomCrops``: 03_unet.ipynb).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

IGNORE_INDEX = 255  # the label of pixels no loss or metric counts (PASCAL VOC's object borders)


def semantic_mask(instance_map: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Class of every pixel from an instance map and the instances' classes.

    Args:
        instance_map: ``(H, W)`` integer map, 0 = background, ``k + 1`` = instance ``k``.
        labels: ``(K,)`` class of each instance (``1..C``).

    Returns:
        ``(H, W)`` int64 class mask, 0 = background.
    """
    if instance_map.dim() != 2:
        raise ValueError(f"instance_map must be (H, W), got {tuple(instance_map.shape)}.")
    if int(instance_map.max()) > labels.numel():
        raise ValueError(f"instance_map refers to instance {int(instance_map.max())} but only {labels.numel()} "
                         f"labels were given; pass one label per instance.")
    lookup = torch.cat([labels.new_zeros(1), labels]).long()  # (K + 1,) instance id -> class
    return lookup[instance_map.long()]  # (H, W)


class SceneSegmentation(Dataset):
    """``(image, class mask)`` pairs from a ``FashionScenes`` dataset.

    Args:
        scenes: a ``companion.detection.scenes.FashionScenes``.

    Items: ``dataset[i]`` is ``(image float32 (3, H, W) in [0, 1], mask int64 (H, W))``; a list of
    indices gives ``(images (B, 3, H, W), masks (B, H, W))`` in one call, as ``companion.engine.fit``
    and ``companion.data.make_loader`` expect.

    Attributes:
        classes: ``["background", <object classes>]``; ``num_classes`` counts the background too.
        masks: int64 ``(N, H, W)``, every scene's class mask (computed once).
    """

    def __init__(self, scenes) -> None:
        self.scenes = scenes
        self.classes = list(scenes.classes)
        self.masks = torch.stack([semantic_mask(scenes.instance_maps[i], scenes.target(i, with_masks=False)["labels"])
                                  for i in range(len(scenes))])  # (N, H, W)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scenes.images[index].float() / 255.0, self.masks[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.scenes.images[index].float() / 255.0, self.masks[index]  # (B, 3, H, W), (B, H, W)


class RandomCrops(Dataset):
    """Random ``size x size`` windows of a segmentation dataset, the same window for image and mask.

    Training on crops is how most segmentation networks are trained: U-Net on tiles of its large
    microscopy images, PSPNet and DeepLab on random crops of PASCAL VOC and Cityscapes. A fully
    convolutional network trained on crops still predicts whole images. A crop costs less per step
    than the whole image, and objects cut at the crop's border are a form of augmentation.

    The window of example ``i`` is drawn from a generator seeded by ``(seed, epoch, i)``: the same
    seed and epoch give the same crops on every machine, whatever the batch order; call
    ``set_epoch(e)`` before each epoch for new windows.

    Args:
        dataset: items ``(image (C, H, W), mask (H, W))``, ``H, W >= size`` (``__getitems__`` is used
            when the dataset has it).
        size: side of the square window in pixels.
        seed: seed of the windows.

    Items: ``(image (C, size, size), mask (size, size))``; a list of indices gives the batch
    ``(images (B, C, size, size), masks (B, size, size))``.
    """

    def __init__(self, dataset: Dataset, size: int, seed: int = 0) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
        self.dataset, self.size, self.seed, self.epoch = dataset, size, seed, 0
        for name in ("classes", "num_classes"):
            if hasattr(dataset, name):
                setattr(self, name, getattr(dataset, name))

    def set_epoch(self, epoch: int) -> None:
        """Draw the windows of epoch ``epoch`` (a non-negative integer) from now on."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}.")
        self.epoch = int(epoch)

    def window(self, index: int, height: int, width: int) -> tuple[int, int]:
        """``(top, left)`` of example ``index``'s window in an ``height x width`` image."""
        if height < self.size or width < self.size:
            raise ValueError(f"cannot crop {self.size} x {self.size} windows from a {height} x {width} image; "
                             f"pass a size of at most {min(height, width)}.")
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        top, left = rng.integers(height - self.size + 1), rng.integers(width - self.size + 1)
        return int(top), int(left)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.dataset[index]  # (C, H, W), (H, W)
        top, left = self.window(index, *mask.shape[-2:])
        return self._cut(image, top, left), self._cut(mask, top, left)  # (C, s, s), (s, s)

    def _cut(self, tensor: torch.Tensor, top: int, left: int) -> torch.Tensor:
        return tensor[..., top:top + self.size, left:left + self.size]  # (..., s, s)

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if hasattr(self.dataset, "__getitems__"):
            images, masks = self.dataset.__getitems__(indices)  # (B, C, H, W), (B, H, W)
        else:
            pairs = [self.dataset[i] for i in indices]
            images, masks = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        windows = [self.window(i, *masks.shape[-2:]) for i in indices]
        images = torch.stack([self._cut(image, *w) for image, w in zip(images, windows)])  # (B, C, s, s)
        masks = torch.stack([self._cut(mask, *w) for mask, w in zip(masks, windows)])  # (B, s, s)
        return images, masks
