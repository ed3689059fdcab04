"""Training and evaluating detectors that follow torchvision's detection interface.

Every detector in Part 3, ours and torchvision's, is called the same way:

- training: ``model.train(); losses = model(images, targets)`` returns a dict of scalar losses, whose
  sum is minimised;
- inference: ``model.eval(); detections = model(images)`` returns one dict per image with ``boxes``
  ``(D, 4)`` xyxy, ``scores`` ``(D,)`` and ``labels`` ``(D,)``.

So one loop trains all of them, one function collects their detections and one scores them with
``companion.detection.evaluate.mean_average_precision``.

Taught in: book/03_detection/06_ssd.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

Target = dict[str, torch.Tensor]


def detection_collate(batch) -> tuple[torch.Tensor | list[torch.Tensor], list[Target]]:
    """Collate ``(image, target)`` pairs: images stacked when they share a size, else a list.

    A batch a dataset already assembled with ``__getitems__`` (``(images, targets)``) passes through.
    """
    if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[1], list):
        return batch
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    if all(image.shape == images[0].shape for image in images):
        return torch.stack(images), targets  # (B, 3, H, W)
    return images, targets


def make_detection_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                          num_workers: int = 0) -> DataLoader:
    """A ``DataLoader`` of ``(images, targets)`` batches; shuffling is seeded, so runs repeat exactly."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      collate_fn=detection_collate, num_workers=num_workers)


def _to_device(images, targets: Sequence[Target] | None, device: torch.device | str):
    if isinstance(images, torch.Tensor):
        images = images.to(device)
    else:
        images = [image.to(device) for image in images]
    if targets is not None:
        targets = [{key: value.to(device) for key, value in target.items()} for target in targets]
    return images, targets


def horizontal_flip(images: torch.Tensor | Sequence[torch.Tensor], targets: Sequence[Target],
                    generator: torch.Generator, p: float = 0.5, *,
                    inclusive_boxes: bool = False) -> tuple[torch.Tensor | list[torch.Tensor], list[Target]]:
    """Mirror each image of a batch with probability ``p``, and its boxes (and masks) with it.

    Args:
        images: ``(B, C, H, W)``, or a list of ``(C, H, W)`` images of different sizes (photographs).
        targets: one target dict per image.
        generator: decides which images flip (seeded, so training repeats exactly).
        p: flip probability.
        inclusive_boxes: the boxes' convention. False (the synthetic scenes): ``x2`` is one past the
            last column, so a box of width ``W`` maps ``x -> W - x``. True (the real datasets of
            ``companion.detection.datasets``, torchvision's ``masks_to_boxes``): ``x2`` is the last
            column itself, so pixel indices map ``x -> W - 1 - x``. Either way a flipped box still
            encloses the flipped mask exactly.

    Returns:
        The new images (a tensor or a list, as given) and new target dicts (inputs are not modified).
    """
    flip = torch.rand(len(images), generator=generator) < p  # (B,)
    if isinstance(images, torch.Tensor):
        images = torch.where(flip[:, None, None, None].to(images.device), images.flip(-1), images)
    else:
        images = [image.flip(-1) if do_flip else image for do_flip, image in zip(flip.tolist(), images)]
    flipped = []
    for do_flip, image, target in zip(flip.tolist(), images, targets):
        target = dict(target)
        if do_flip:
            right = image.shape[-1] - 1 if inclusive_boxes else image.shape[-1]  # x maps to right - x
            boxes = target["boxes"]
            target["boxes"] = torch.stack([right - boxes[:, 2], boxes[:, 1], right - boxes[:, 0], boxes[:, 3]],
                                          dim=1)  # (K, 4) x1 and x2 mirrored and swapped
            if "masks" in target:
                target["masks"] = target["masks"].flip(-1)
        flipped.append(target)
    return images, flipped


def fit_detector(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, epochs: int = 1,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                 device: torch.device | str = "cpu", max_grad_norm: float | None = None,
                 flip_generator: torch.Generator | None = None,
                 flip_inclusive_boxes: bool = False) -> list[dict[str, float]]:
    """Train a detector that returns a dict of losses in training mode.

    Args:
        model: a detector with torchvision's interface (see the module docstring).
        optimizer: its optimizer.
        loader: batches of ``(images, targets)``.
        epochs: passes over ``loader``.
        scheduler: stepped after every optimisation step (e.g. OneCycleLR), not every epoch.
        device: where to train.
        max_grad_norm: clip the gradient norm to this value when given.
        flip_generator: when given, random horizontal flips augment each batch (a tensor or a list of photos).
        flip_inclusive_boxes: the boxes' convention for those flips (:func:`horizontal_flip`'s
            ``inclusive_boxes``): True for the real datasets, False for the synthetic scenes.

    Returns:
        One dict per step: each loss by name and their ``"total"``, as floats.

    Raises:
        FloatingPointError: a loss became NaN or infinite (lower the learning rate or clip gradients).
    """
    model.to(device).train()
    history: list[dict[str, float]] = []
    for _ in range(epochs):
        for images, targets in loader:
            if flip_generator is not None:
                images, targets = horizontal_flip(images, targets, flip_generator,
                                                  inclusive_boxes=flip_inclusive_boxes)
            images, targets = _to_device(images, targets, device)
            losses = model(images, targets)
            total = sum(losses.values())
            if not torch.isfinite(total):
                raise FloatingPointError(f"the loss became {float(total.detach())} at step {len(history)} "
                                         f"({ {k: float(v.detach()) for k, v in losses.items()} }); lower the learning "
                                         f"rate or pass max_grad_norm.")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if max_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            record = {name: float(value.detach()) for name, value in losses.items()}
            record["total"] = float(total.detach())
            history.append(record)
    return history


@torch.no_grad()
def predict_detections(model: nn.Module, data: Dataset | DataLoader, batch_size: int = 64,
                       device: torch.device | str = "cpu") -> list[Target]:
    """Run a detector in eval mode over a dataset (or loader); detections are returned on the CPU."""
    loader = data if isinstance(data, DataLoader) else make_detection_loader(data, batch_size)
    model.to(device).eval()
    detections: list[Target] = []
    for images, _ in loader:
        images, _ = _to_device(images, None, device)
        for output in model(images):
            detections.append({key: output[key].detach().cpu() for key in ("boxes", "scores", "labels")})
    return detections


def dataset_targets(dataset: Dataset) -> list[Target]:
    """The ground-truth boxes and labels of every item of a dataset, in order."""
    if hasattr(dataset, "target"):
        return [dataset.target(i, with_masks=False) for i in range(len(dataset))]
    return [{"boxes": target["boxes"], "labels": target["labels"]} for _, target in dataset]


def evaluate_detector(model: nn.Module, dataset: Dataset, batch_size: int = 64,
                      device: torch.device | str = "cpu", **map_options) -> dict:
    """COCO-style mAP of a detector on a dataset (see ``mean_average_precision``)."""
    from companion.detection.evaluate import mean_average_precision

    detections = predict_detections(model, dataset, batch_size=batch_size, device=device)
    return mean_average_precision(detections, dataset_targets(dataset), **map_options)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int,
                  warmup_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the optimizer's learning rate, then cosine decay to zero, per step."""
    if total_steps < 1 or not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}.")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
