"""A training recipe for small image classifiers, as one dataclass, and what it builds.

The recipe gathers the choices that are not the architecture: data augmentation, label smoothing,
the learning-rate schedule, mixed precision and the memory format. :func:`build_training` turns a
recipe, a model and datasets into the optimizer, scheduler, loaders, loss and ``TrainConfig`` that
``companion.engine.fit`` takes, so an ablation is a list of recipes that differ in one field.

Taught in: book/02_cnn/09_training_recipe.ipynb.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from companion.cnn.label_smoothing import LabelSmoothingCrossEntropy
from companion.data.loaders import make_loader
from companion.engine.fit import TrainConfig
from companion.foundations.schedules import ScheduleLR, warmup_cosine_lr

SCHEDULES = ("constant", "onecycle", "cosine")


@dataclasses.dataclass
class TrainingRecipe:
    """Everything about training except the model and the data; defaults suit a small BN CNN."""

    # Passes over the training set.
    epochs: int = 5
    # Mini-batch size; 128 gives enough steps per epoch for a schedule to shape on small data.
    batch_size: int = 128
    # Peak learning rate of SGD with Nesterov momentum; batch normalisation tolerates a large one.
    learning_rate: float = 0.1
    # Momentum of SGD (OneCycleLR cycles it between 0.95 and 0.85, inversely to the rate).
    momentum: float = 0.9
    # L2 penalty folded into SGD's update (decoupled from the loss); 5e-4 is the usual CNN value.
    weight_decay: float = 5e-4
    # "constant": the peak rate throughout; "onecycle": OneCycleLR (Smith & Topin, 2019);
    # "cosine": linear warm-up then a cosine decay to 0. Both schedules step after every batch.
    schedule: str = "onecycle"
    # Fraction of all steps spent warming up (OneCycleLR's pct_start, the cosine's warm-up).
    warmup_fraction: float = 0.25
    # Random crops (after zero padding) and horizontal flips of each training image.
    augment: bool = True
    # Zero pixels added on each side before the random crop back to the input size.
    crop_padding: int = 2
    # Mirror images left-right with probability 1/2: right for clothes, wrong for digits or text.
    horizontal_flip: bool = True
    # Probability of erasing a random rectangle of each image (Zhong et al., 2020); 0: off.
    random_erasing: float = 0.0
    # Label smoothing eps (Szegedy et al., 2016); 0 gives the plain cross-entropy.
    label_smoothing: float = 0.1
    # Mixed precision through companion.utils.amp (bf16 on CPU; bf16 or fp16 + GradScaler on CUDA).
    amp: bool = False
    # Model and inputs in channels_last memory format (faster convolutions on tensor-core GPUs).
    channels_last: bool = False
    # Seed of the training loader's shuffle.
    seed: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}.")
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {self.label_smoothing}.")
        if not 0.0 < self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in (0, 1), got {self.warmup_fraction}.")
        if not 0.0 <= self.random_erasing <= 1.0:
            raise ValueError(f"random_erasing is a probability in [0, 1], got {self.random_erasing}.")
        if self.epochs < 1 or self.batch_size < 1 or self.crop_padding < 0:
            raise ValueError("epochs and batch_size must be >= 1 and crop_padding >= 0, got "
                             f"{self.epochs}, {self.batch_size}, {self.crop_padding}.")


def build_augmentation(recipe: TrainingRecipe, image_size: int | Sequence[int]) -> Callable | None:
    """The per-image augmentation of ``recipe`` as a ``torchvision.transforms.v2`` pipeline.

    Args:
        recipe: reads ``augment``, ``crop_padding``, ``horizontal_flip`` and ``random_erasing``.
        image_size: the side (or ``(H, W)``) of the images the pipeline receives and returns.

    Returns:
        A transform of one ``(C, H, W)`` image, or None when ``recipe.augment`` is False.
    """
    if not recipe.augment:
        return None
    from torchvision.transforms import v2  # torchvision only when augmenting

    steps: list[Any] = []
    if recipe.crop_padding > 0:
        steps.append(v2.RandomCrop(image_size, padding=recipe.crop_padding, fill=0))
    if recipe.horizontal_flip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if recipe.random_erasing > 0:
        steps.append(v2.RandomErasing(p=recipe.random_erasing, value=0))
    return v2.Compose(steps) if steps else None


class PerImageTransform(Dataset):
    """Apply ``transform`` to every image of ``dataset`` separately.

    ``torchvision.transforms.v2`` draws one set of random parameters per call, so calling it on a
    whole batch would crop and flip every image of the batch the same way. This wrapper calls it
    once per image. It keeps the wrapped dataset's batched indexing (``__getitems__``) so the loader
    does not have to collate single images.

    Randomness comes from torch's global generator; with ``num_workers=0`` and a seeded run the
    augmented batches are reproducible.

    Args:
        dataset: returns ``(image, label)`` pairs; ``(B, C, H, W)`` batches if it has ``__getitems__``.
        transform: maps one ``(C, H, W)`` image to one image.
    """

    def __init__(self, dataset: Dataset, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.dataset, self.transform = dataset, transform
        self.classes = getattr(dataset, "classes", [])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.dataset[index]
        return self.transform(image), label

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if hasattr(self.dataset, "__getitems__"):
            images, labels = self.dataset.__getitems__(indices)  # (B, C, H, W), (B,)
        else:
            pairs = [self.dataset[i] for i in indices]
            images = torch.stack([image for image, _ in pairs])  # (B, C, H, W)
            labels = torch.as_tensor([int(label) for _, label in pairs])  # (B,)
        return torch.stack([self.transform(image) for image in images]), labels  # (B, C, H, W), (B,)


def build_optimizer(recipe: TrainingRecipe, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum and weight decay at the recipe's peak learning rate."""
    return torch.optim.SGD(model.parameters(), lr=recipe.learning_rate, momentum=recipe.momentum,
                           nesterov=recipe.momentum > 0, weight_decay=recipe.weight_decay)


def build_scheduler(recipe: TrainingRecipe, optimizer: torch.optim.Optimizer,
                    total_steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The recipe's learning-rate schedule over ``total_steps`` optimizer steps (stepped per batch).

    Returns:
        ``OneCycleLR``, a warm-up + cosine :class:`~companion.foundations.schedules.ScheduleLR`, or
        None for ``"constant"``.
    """
    if recipe.schedule == "constant":
        return None
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.learning_rate,
                                                   total_steps=total_steps,
                                                   pct_start=recipe.warmup_fraction)
    warmup = max(1, round(recipe.warmup_fraction * total_steps))
    return ScheduleLR(optimizer, functools.partial(warmup_cosine_lr, base_lr=recipe.learning_rate,
                                                   warmup_steps=warmup, total_steps=total_steps))


def build_loss(recipe: TrainingRecipe) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Label-smoothed cross-entropy when ``recipe.label_smoothing > 0``, else ``F.cross_entropy``."""
    if recipe.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(recipe.label_smoothing)
    return F.cross_entropy


@dataclasses.dataclass
class TrainingSetup:
    """What :func:`build_training` returns: the arguments of ``companion.engine.fit``."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    train_loader: DataLoader
    val_loader: DataLoader | None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    config: TrainConfig


def build_training(recipe: TrainingRecipe, model: nn.Module, train_set: Dataset,
                   val_set: Dataset | None = None, *, image_size: int | Sequence[int],
                   device: str | torch.device | None = None, num_workers: int = 0,
                   eval_batch_size: int = 1024) -> TrainingSetup:
    """Everything ``fit`` needs to train ``model`` with ``recipe``.

    Use as ``fit(model, s.optimizer, s.train_loader, s.val_loader, config=s.config,
    loss_fn=s.loss_fn, scheduler=s.scheduler)`` with ``s = build_training(...)``.

    Args:
        recipe: the recipe.
        model: the network (its parameters go to the optimizer).
        train_set: ``(image, label)`` pairs, augmented per image when ``recipe.augment``.
        val_set: evaluated after every epoch, never augmented.
        image_size: side (or ``(H, W)``) of the training images, for the random crop.
        device: where ``fit`` trains (None: the best available).
        num_workers: DataLoader worker processes.
        eval_batch_size: batch size of the validation loader.

    Returns:
        A :class:`TrainingSetup`.
    """
    augmentation = build_augmentation(recipe, image_size)
    train_data = train_set if augmentation is None else PerImageTransform(train_set, augmentation)
    train_loader = make_loader(train_data, recipe.batch_size, shuffle=True, seed=recipe.seed,
                               num_workers=num_workers)
    val_loader = None if val_set is None else make_loader(val_set, eval_batch_size,
                                                          num_workers=num_workers)
    optimizer = build_optimizer(recipe, model)
    scheduler = build_scheduler(recipe, optimizer, recipe.epochs * len(train_loader))
    config = TrainConfig(epochs=recipe.epochs, device=device, amp=recipe.amp,
                         channels_last=recipe.channels_last, scheduler_interval="step")
    return TrainingSetup(optimizer, scheduler, train_loader, val_loader, build_loss(recipe), config)
