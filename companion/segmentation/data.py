"""Semantic segmentation data: the synthetic scenes of Part 3 as (image, class mask) pairs.

``FashionScenes`` (``companion.detection.scenes``) stores, for every scene, an instance map (0 for the
background, ``k + 1`` for the k-th object) and each object's class. The *semantic* mask replaces every
instance id by its object's class: one integer per pixel, 0 for the background and ``1..C`` for the
classes, the format ``F.cross_entropy`` expects for ``(B, C+1, H, W)`` logits.

Taught in: book/04_segmentation/01_semantic_segmentation.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

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
