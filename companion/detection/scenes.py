"""A synthetic detection dataset made from real images: Fashion-MNIST items pasted on real textures.

Real detection datasets (PASCAL VOC, COCO, Penn-Fudan) need a download; the quick profile must run
offline in about a minute on two CPU cores. ``FashionScenes`` builds scenes from real pictures
instead: each scene is a crop of a texture or photograph from ``skimage.data`` (brick, grass, gravel,
coins, the moon, the camera man, coffee, ...), with one to four Fashion-MNIST items pasted on it at
random positions and scales, tinted in random colours, possibly hiding part of one another. Because we
paste the items ourselves, every box and every instance mask is exact.

What the generator guarantees:

- Each item is an ``s_w x s_h`` patch (``s`` from ``min_size`` to ``max_size`` pixels, aspect jittered
  by up to 15 %), fully inside the canvas. Its mask is the patch's pixels brighter than
  ``MASK_THRESHOLD`` in the Fashion-MNIST image, and exactly those pixels are painted, opaquely, in a
  random colour shaded by the item's brightness: a pixel shows the item if and only if it is in the
  item's visible mask, so the labels carry no ambiguity at the edges.
- The background is a crop of the texture, darkened and lowered in contrast (values in ``[0, 0.65]``)
  so that the items stand out from it.
- Later items are painted over earlier ones. A placement is rejected (and retried) when it would hide
  more than ``max_hidden`` (default a quarter) of an earlier item's mask, so every listed object keeps
  most of its shape visible.
- Masks are the *visible* pixels, and a box encloses its visible mask: ``x1`` is the first column,
  ``x2`` the last column plus one (a box covers whole pixels, so ``box_area`` equals the pixel count of
  a full rectangle). Note that ``torchvision.ops.masks_to_boxes`` uses the last column itself.
- Splits never share a Fashion-MNIST item: ``train`` pastes training images 0-49,999, ``val`` training
  images 50,000-59,999 and ``test`` the official test images. The scene layout comes from a NumPy
  generator seeded by ``(seed, split)``, so a dataset is the same on every machine.
- ``classes="distinct"`` keeps five visually distinct classes (trouser, dress, sneaker, bag, ankle
  boot); ``"all"`` uses all ten, where shirt, T-shirt, pullover and coat are hard to tell apart.

Labels follow torchvision: ``0`` is the background, objects are ``1..C`` and ``classes[0] ==
"background"``.

Taught in: book/03_detection/01_boxes_iou.ipynb (and used by every chapter of Parts 3 and 4).
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

MASK_THRESHOLD = 0.2  # an item's pixel belongs to its mask when brighter than this (of 1.0)
DISTINCT_CLASSES = (1, 3, 7, 8, 9)  # Fashion-MNIST labels: Trouser, Dress, Sneaker, Bag, Ankle boot
TEXTURES = ("brick", "grass", "gravel", "coins", "moon", "camera", "coffee", "astronaut", "chelsea",
            "rocket", "immunohistochemistry", "hubble_deep_field")
SPLITS = ("train", "val", "test")
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


@lru_cache(maxsize=None)
def _texture(name: str) -> torch.Tensor:
    """An ``skimage.data`` picture as a float RGB tensor ``(3, H, W)`` in ``[0, 1]``."""
    import skimage.data

    array = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)  # (H, W, 3) grey as RGB
    return torch.from_numpy(np.ascontiguousarray(array[:, :, :3].transpose(2, 0, 1)))  # (3, H, W)


@lru_cache(maxsize=2)
def _fashion(split: str, root: str | None):
    """Fashion-MNIST's train or test split, read once per process (unzipping takes a second or two)."""
    from companion.data import get_dataset

    return get_dataset("fashion-mnist", split, root=root)


def _background(rng: np.random.Generator, canvas_size: int) -> torch.Tensor:
    """A random crop of a random texture, resized to the canvas, darkened and lowered in contrast."""
    texture = _texture(TEXTURES[rng.integers(len(TEXTURES))])  # (3, H, W)
    height, width = texture.shape[1:]
    crop = int(rng.integers(canvas_size, min(height, width, 4 * canvas_size) + 1))
    top, left = int(rng.integers(height - crop + 1)), int(rng.integers(width - crop + 1))
    patch = texture[:, top:top + crop, left:left + crop].unsqueeze(0)  # (1, 3, crop, crop)
    patch = F.interpolate(patch, size=(canvas_size, canvas_size), mode="bilinear", antialias=True,
                          align_corners=False)[0]  # (3, S, S)
    low, span = rng.uniform(0.0, 0.2), rng.uniform(0.2, 0.45)  # values in [0, 0.65]: the items stand out
    return (low + span * patch).clamp_(0.0, 1.0)


def _colour(rng: np.random.Generator) -> torch.Tensor:
    hue, saturation, value = rng.uniform(), rng.uniform(0.3, 0.9), rng.uniform(0.75, 1.0)
    return torch.tensor(colorsys.hsv_to_rgb(hue, saturation, value), dtype=torch.float32)  # (3,)


def render_scene(items: Sequence[torch.Tensor], rng: np.random.Generator, canvas_size: int = 96,
                 min_size: int = 20, max_size: int = 48, attempts: int = 20, max_hidden: float = 0.25
                 ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Paste grey item images on a random background.

    Args:
        items: grey images ``(h, w)`` float in ``[0, 1]`` (bright object on black), in paint order.
        rng: the NumPy generator that decides everything random.
        canvas_size: side of the square scene in pixels.
        min_size: smallest item side in pixels.
        max_size: largest item side in pixels.
        attempts: placements tried per item before it is left out.
        max_hidden: the largest fraction of an earlier item's mask a later item may cover.

    Returns:
        ``image`` float ``(3, S, S)`` in ``[0, 1]``, ``instance_map`` uint8 ``(S, S)`` (0 = background,
        ``k + 1`` = the k-th *placed* item) and ``placed``, the indices into ``items`` that were placed.
    """
    if max_size > canvas_size or min_size < 2 or min_size > max_size:
        raise ValueError(f"need 2 <= min_size <= max_size <= canvas_size, got min_size={min_size}, "
                         f"max_size={max_size}, canvas_size={canvas_size}.")
    if not 0.0 <= max_hidden < 1.0:
        raise ValueError(f"max_hidden must be a fraction in [0, 1), got {max_hidden}.")
    image = _background(rng, canvas_size)  # (3, S, S)
    instance_map = torch.zeros(canvas_size, canvas_size, dtype=torch.uint8)  # (S, S)
    full_area: list[int] = []  # mask pixels of each placed item when it was pasted
    placed: list[int] = []
    for index, item in enumerate(items):
        size = rng.uniform(min_size, max_size)
        aspect = rng.uniform(0.85, 1.15)
        height = int(np.clip(round(size * aspect), min_size, max_size))
        width = int(np.clip(round(size / aspect), min_size, max_size))
        patch = F.interpolate(item[None, None], size=(height, width), mode="bilinear",
                              align_corners=False)[0, 0].clamp(0.0, 1.0)  # (h, w)
        mask = patch > MASK_THRESHOLD  # (h, w)
        if not mask.any():
            continue
        colour = _colour(rng)
        visible = torch.bincount(instance_map.flatten().long(), minlength=len(placed) + 1)[1:]  # (placed,)
        for _ in range(attempts):
            top = int(rng.integers(canvas_size - height + 1))
            left = int(rng.integers(canvas_size - width + 1))
            window = instance_map[top:top + height, left:left + width]  # (h, w) view
            hidden = torch.bincount(window[mask].long(), minlength=len(placed) + 1)[1:]  # (placed,)
            if all(visible[k] - hidden[k] >= (1.0 - max_hidden) * full_area[k] for k in range(len(placed))):
                break
        else:
            continue  # no placement keeps enough of the earlier items visible: leave this item out
        paint = colour[:, None, None] * (0.35 + 0.65 * patch)  # (3, h, w) tinted, keeps the item's shading
        region = image[:, top:top + height, left:left + width]  # (3, h, w) view
        region[:, mask] = paint[:, mask]  # opaque: exactly the mask's pixels show the item
        window[mask] = len(placed) + 1
        full_area.append(int(mask.sum()))
        placed.append(index)
    return image, instance_map, placed


def instance_masks(instance_map: torch.Tensor, count: int) -> torch.Tensor:
    """``(count, H, W)`` bool masks from an instance map (``k + 1`` marks instance ``k``)."""
    ids = torch.arange(1, count + 1, dtype=instance_map.dtype)  # (K,)
    return instance_map.unsqueeze(0) == ids[:, None, None]  # (K, H, W)


def boxes_from_instance_map(instance_map: torch.Tensor, count: int) -> torch.Tensor:
    """``(count, 4)`` xyxy boxes enclosing each instance's pixels (``x2`` = last column + 1)."""
    masks = instance_masks(instance_map, count)  # (K, H, W)
    boxes = torch.zeros(count, 4)
    for k in range(count):
        rows = torch.nonzero(masks[k].any(dim=1)).flatten()
        cols = torch.nonzero(masks[k].any(dim=0)).flatten()
        boxes[k] = torch.tensor([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=torch.float32)
    return boxes


class FashionScenes(Dataset):
    """Scenes of Fashion-MNIST items on real textures, with exact boxes and instance masks.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (they never share a Fashion-MNIST item).
        size: number of scenes.
        seed: layout seed; the same ``(split, size, seed, ...)`` gives the same scenes everywhere.
        classes: ``"distinct"`` (five classes) or ``"all"`` (ten).
        canvas_size: scene side in pixels.
        min_items: fewest items per scene.
        max_items: most items per scene (an item that cannot be placed is left out).
        min_size: smallest item side in pixels.
        max_size: largest item side in pixels.
        max_hidden: the largest fraction of an object that later objects may cover.
        root: where Fashion-MNIST is looked for (see ``companion.data.get_dataset``).

    Attributes:
        images: uint8 ``(N, 3, S, S)``.
        instance_maps: uint8 ``(N, S, S)``: 0 background, ``k + 1`` the k-th object of the scene.
        targets: one dict per scene: ``boxes`` ``(K, 4)`` float32 xyxy, ``labels`` ``(K,)`` int64 in
            ``1..C``, ``masks`` ``(K, S, S)`` bool (built on access, from ``instance_maps``).
        classes: ``["background", <object classes>]``.
        source_indices: per scene, the Fashion-MNIST index of each object (of its train or test split).

    Items: ``dataset[i]`` is ``(image float32 (3, S, S) in [0, 1], target)``.
    """

    def __init__(self, split: str = "train", size: int = 1000, seed: int = 0, classes: str = "distinct",
                 canvas_size: int = 96, min_items: int = 1, max_items: int = 4, min_size: int = 20,
                 max_size: int = 48, max_hidden: float = 0.25, root: str | Path | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
        if classes not in ("distinct", "all"):
            raise ValueError(f"classes must be 'distinct' (five classes) or 'all' (ten), got {classes!r}.")
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive number of scenes, got {size!r}.")
        if not 1 <= min_items <= max_items:
            raise ValueError(f"need 1 <= min_items <= max_items, got {min_items} and {max_items}.")
        source = _fashion("test" if split == "test" else "train", None if root is None else str(root))
        fashion_labels = DISTINCT_CLASSES if classes == "distinct" else tuple(range(10))
        self.classes = ["background"] + [source.classes[k] for k in fashion_labels]
        self.split, self.seed, self.canvas_size = split, seed, canvas_size
        label_of = {fashion: k + 1 for k, fashion in enumerate(fashion_labels)}  # Fashion-MNIST -> ours
        pool = torch.arange(len(source))
        if split == "train":
            pool = pool[:50_000]
        elif split == "val":
            pool = pool[50_000:]
        keep = torch.isin(source.labels[pool], torch.tensor(fashion_labels))
        pool = pool[keep].numpy()  # Fashion-MNIST indices this split may paste

        rng = np.random.default_rng([seed, _SPLIT_CODE[split], canvas_size])
        images, maps, self._boxes, self._labels = [], [], [], []
        self.source_indices: list[torch.Tensor] = []  # Fashion-MNIST index of each object, per scene
        for _ in range(size):
            chosen = rng.choice(pool, size=int(rng.integers(min_items, max_items + 1)), replace=False)
            items = [source.images[i, 0].float() / 255.0 for i in chosen]  # (28, 28) each
            image, instance_map, placed = render_scene(items, rng, canvas_size, min_size, max_size,
                                                       max_hidden=max_hidden)
            images.append((image * 255.0).round_().to(torch.uint8))
            maps.append(instance_map)
            self._boxes.append(boxes_from_instance_map(instance_map, len(placed)))
            self._labels.append(torch.tensor([label_of[int(source.labels[chosen[k]])] for k in placed],
                                             dtype=torch.int64))
            self.source_indices.append(torch.as_tensor(chosen[placed], dtype=torch.int64))
        self.images = torch.stack(images)  # (N, 3, S, S) uint8
        self.instance_maps = torch.stack(maps)  # (N, S, S) uint8

    @property
    def num_classes(self) -> int:
        """Object classes plus the background, as torchvision's ``num_classes`` counts them."""
        return len(self.classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def target(self, index: int, with_masks: bool = True) -> dict[str, torch.Tensor]:
        """The target dict of scene ``index`` (copies; safe to modify)."""
        target = {"boxes": self._boxes[index].clone(), "labels": self._labels[index].clone()}
        if with_masks:
            target["masks"] = instance_masks(self.instance_maps[index], len(self._labels[index]))
        return target

    @property
    def targets(self) -> list[dict[str, torch.Tensor]]:
        return [self.target(i) for i in range(len(self))]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.images[index].float() / 255.0, self.target(index)

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[index].float() / 255.0  # (B, 3, S, S)
        return images, [self.target(int(i), with_masks=False) for i in index]

    def __repr__(self) -> str:
        return (f"FashionScenes(split={self.split!r}, size={len(self)}, seed={self.seed}, "
                f"classes={self.classes[1:]}, canvas_size={self.canvas_size})")
