"""Semantic segmentation data: the synthetic scenes of Part 3 as (image, class mask) pairs.

``FashionScenes`` (``companion.detection.scenes``) stores, for every scene, an instance map (0 for the
background, ``k + 1`` for the k-th object) and each object's class. The *semantic* mask replaces every
instance id by its object's class: one integer per pixel, 0 for the background and ``1..C`` for the
classes, the format ``F.cross_entropy`` expects for ``(B, C+1, H, W)`` logits.

``RandomCrops`` and ``ScaleCropPad`` turn them (or photographs of any size) into fixed-size training
examples.

Taught in: book/04_segmentation/01_semantic_segmentation.ipynb (``RandomCrops``: 03_unet.ipynb;
``ScaleCropPad``: 03_unet.ipynb's full profile).
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


def pixel_fractions(dataset: Dataset, num_classes: int, every: int = 1) -> torch.Tensor:
    """Share of the (non-ignored) pixels of each class, over every ``every``-th example of ``dataset``.

    Uses ``dataset.masks`` ``(N, H, W)`` where it has them (the scenes), else reads the items.

    Returns:
        ``(num_classes,)`` float64 fractions that sum to 1.
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}.")
    if hasattr(dataset, "masks"):
        labels = dataset.masks[::every].flatten()
    else:
        labels = torch.cat([dataset[i][1].flatten() for i in range(0, len(dataset), every)])
    labels = labels[labels != IGNORE_INDEX]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"the masks hold labels {int(labels.min())}..{int(labels.max())}, outside 0..{num_classes - 1} "
                         f"(and {IGNORE_INDEX}); pass the dataset's num_classes.")
    counts = torch.bincount(labels, minlength=num_classes).double()
    return counts / counts.sum().clamp(min=1)


class _SeededWindows(Dataset):
    """Shared by the cropping wrappers: ``size``, a seed, the epoch, and the wrapped dataset's class names.

    Example ``i``'s random choices come from a generator seeded by ``(seed, epoch, i)``: the same seed
    and epoch give the same examples on every machine, whatever the batch order.
    """

    def __init__(self, dataset: Dataset, size: int, seed: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
        self.dataset, self.size, self.seed, self.epoch = dataset, size, seed, 0
        for name in ("classes", "num_classes"):
            if hasattr(dataset, name):
                setattr(self, name, getattr(dataset, name))

    def set_epoch(self, epoch: int) -> None:
        """Draw the examples of epoch ``epoch`` (a non-negative integer) from now on."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}.")
        self.epoch = int(epoch)

    def _generator(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def _cut(self, tensor: torch.Tensor, top: int, left: int) -> torch.Tensor:
        return tensor[..., top:top + self.size, left:left + self.size]  # (..., s, s)

    def __len__(self) -> int:
        return len(self.dataset)


class RandomCrops(_SeededWindows):
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
        super().__init__(dataset, size, seed)

    def window(self, index: int, height: int, width: int) -> tuple[int, int]:
        """``(top, left)`` of example ``index``'s window in an ``height x width`` image."""
        if height < self.size or width < self.size:
            raise ValueError(f"cannot crop {self.size} x {self.size} windows from a {height} x {width} image; "
                             f"pass a size of at most {min(height, width)}.")
        rng = self._generator(index)
        top, left = rng.integers(height - self.size + 1), rng.integers(width - self.size + 1)
        return int(top), int(left)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.dataset[index]  # (C, H, W), (H, W)
        top, left = self.window(index, *mask.shape[-2:])
        return self._cut(image, top, left), self._cut(mask, top, left)  # (C, s, s), (s, s)

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


class ScaleCropPad(_SeededWindows):
    """Images of any size as ``size x size`` examples: scale, pad, crop and flip image and mask alike.

    Photographs (PASCAL VOC, Oxford-IIIT Pets) differ in size, and a batch needs one size. Example
    ``i`` is made in four steps, its random choices drawn from a generator seeded by
    ``(seed, epoch, i)`` (call ``set_epoch(e)`` before each epoch for new ones):

    1. scale by ``base * s``: ``base`` is ``longer_side / max(H, W)`` (every image brought to the same
       longer side) or 1 without ``longer_side``; ``s`` is drawn uniformly from ``scale``. The image is
       resized bilinearly (antialiased when it shrinks), the mask by nearest neighbour, so every pixel
       keeps a class that was there;
    2. pad the bottom and right up to ``size`` where the scaled image is smaller: the image with
       ``fill``, the mask with ``IGNORE_INDEX``, so padding counts in no loss and no metric;
    3. cut a random ``size x size`` window of the (padded) result;
    4. flip it left-right with probability 1/2 when ``flip``.

    For training: ``ScaleCropPad(train, 320, longer_side=320, scale=(0.5, 2.0), flip=True)`` (the
    random-scale crops DeepLab and PSPNet train with). For evaluation: ``ScaleCropPad(test, 320,
    longer_side=320)``: every image is resized to the longer side 320 and padded, so the whole image
    is kept and nothing is random (the window can only start at the top-left corner). The scores are
    then those of the resized images.

    Args:
        dataset: items ``(image float (C, H, W), mask int64 (H, W))`` of any ``H, W``.
        size: side of the examples in pixels.
        longer_side: bring every image's longer side to this many pixels before ``scale``; None keeps
            the original resolution.
        scale: ``(low, high)``, the range of the random factor ``s`` (``(1.0, 1.0)``: none).
        flip: flip half the examples left-right.
        fill: the value of padded image pixels.
        seed: seed of the random choices.

    Items: ``(image (C, size, size), mask (size, size))``; a list of indices gives the batch.
    """

    def __init__(self, dataset: Dataset, size: int, *, longer_side: int | None = None,
                 scale: tuple[float, float] = (1.0, 1.0), flip: bool = False, fill: float = 0.0,
                 seed: int = 0) -> None:
        super().__init__(dataset, size, seed)
        if longer_side is not None and (isinstance(longer_side, bool) or not isinstance(longer_side, int)
                                        or longer_side < 1):
            raise ValueError(f"longer_side must be a positive number of pixels or None, got {longer_side!r}.")
        low, high = (float(value) for value in scale)
        if not 0 < low <= high:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale!r}; "
                             f"(1.0, 1.0) scales nothing.")
        self.longer_side, self.scale, self.flip, self.fill = longer_side, (low, high), bool(flip), float(fill)

    def params(self, index: int, height: int, width: int) -> dict:
        """The choices for example ``index`` of an ``height x width`` image.

        Returns:
            ``{"height", "width"}`` after scaling, ``{"top", "left"}`` of the window in the padded
            image, and ``"flip"`` (bool).
        """
        rng = self._generator(index)
        base = 1.0 if self.longer_side is None else self.longer_side / max(height, width)
        factor = base * rng.uniform(*self.scale)
        scaled_height, scaled_width = max(1, round(height * factor)), max(1, round(width * factor))
        top = int(rng.integers(max(scaled_height, self.size) - self.size + 1))
        left = int(rng.integers(max(scaled_width, self.size) - self.size + 1))
        flip = self.flip and bool(rng.random() < 0.5)
        return {"height": scaled_height, "width": scaled_width, "top": top, "left": left, "flip": flip}

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.dataset[index]  # (C, H, W), (H, W)
        if image.dim() != 3 or not image.is_floating_point():
            raise ValueError(f"item {index}: the image must be a float (C, H, W) tensor, got "
                             f"{image.dtype} {tuple(image.shape)}; convert it with image.float() / 255 first.")
        if mask.shape != image.shape[-2:]:
            raise ValueError(f"item {index}: mask {tuple(mask.shape)} and image {tuple(image.shape)} differ in "
                             f"size; they must be the same (H, W).")
        choice = self.params(index, *mask.shape)
        shape = (choice["height"], choice["width"])
        if shape != tuple(mask.shape):
            image = torch.nn.functional.interpolate(image[None], size=shape, mode="bilinear", align_corners=False,
                                                    antialias=True)[0]  # (C, h, w)
            mask = torch.nn.functional.interpolate(mask[None, None].float(), size=shape,
                                                   mode="nearest")[0, 0].to(mask.dtype)  # (h, w)
        pad = (0, max(self.size - shape[1], 0), 0, max(self.size - shape[0], 0))  # (left, right, top, bottom)
        if any(pad):
            image = torch.nn.functional.pad(image, pad, value=self.fill)
            mask = torch.nn.functional.pad(mask, pad, value=IGNORE_INDEX)
        image, mask = self._cut(image, choice["top"], choice["left"]), self._cut(mask, choice["top"], choice["left"])
        if choice["flip"]:
            image, mask = image.flip(-1), mask.flip(-1)
        return image.contiguous(), mask.contiguous()  # (C, s, s), (s, s)

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self[i] for i in indices]
        return torch.stack([image for image, _ in pairs]), torch.stack([mask for _, mask in pairs])
