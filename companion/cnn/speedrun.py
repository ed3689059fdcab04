"""A fast CIFAR-10 recipe: a 9-layer residual network trained for a few epochs with the data on the GPU.

The network and most of the recipe follow David Page's "How to train your ResNet" series
(Myrtle.ai, 2018), whose 9-layer ResNet reached the DAWNBench target of 94% CIFAR-10 test accuracy
on one GPU: a prep convolution, three stages that each double the width and halve the resolution
(with a residual block after the first and third), global max pooling and a linear layer whose logits
are scaled down by 1/8. The training loop follows the same series and Keller Jordan's airbench
(Jordan, 2024): the whole training set lives on the device as one tensor, normalised once;
augmentation (random crops of a reflect-padded image, horizontal flips, and the cutout of DeVries &
Taylor, 2017) is done on whole batches there; the learning rate rises linearly then falls linearly
to zero; labels are smoothed; and the test images are classified with and without a horizontal flip
(test-time augmentation). Convolutions run in channels_last with bfloat16/float16 autocast
(``companion.utils.amp``). This is our own code; it is much simpler (and slower) than airbench,
whose further tricks (patch whitening, Lookahead, derandomised flips, multi-crop evaluation,
torch.compile) are left as exercises.

Taught in: book/02_cnn (the full profile's CIFAR-10 speedrun; measured by benchmarks/gpu_targets.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from companion.utils.amp import autocast, grad_scaler


@dataclasses.dataclass
class SpeedrunRecipe:
    """How :func:`train_speedrun` trains; the defaults are the recipe the benchmark measures."""

    # Passes over the 50,000 training images. Page's ResNet-9 reached 94% in 24 epochs (the fourth
    # post of his series); label smoothing and flip test-time augmentation add some margin.
    epochs: int = 24
    # Images per SGD step; the last incomplete batch of an epoch is dropped (steady BN statistics).
    batch_size: int = 512
    # Channels of the prep layer and of the three stages (Page's ResNet-9: 64, 128, 256, 512).
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    # Peak learning rate of SGD on the mean loss over a batch.
    learning_rate: float = 0.4
    # Fraction of the steps over which the rate rises linearly from 0 to its peak; it then falls
    # linearly to 0 at the last step (a triangular one-cycle schedule, as in Page's series).
    warmup_fraction: float = 0.2
    # Nesterov momentum.
    momentum: float = 0.9
    # L2 weight decay, applied to every parameter (BN scales and shifts too) for simplicity.
    weight_decay: float = 5e-4
    # Weight of the uniform distribution mixed into the one-hot targets (Szegedy et al., 2016).
    label_smoothing: float = 0.2
    # Reflect padding before a random 32x32 crop, in pixels (0: no translation).
    crop_padding: int = 4
    # Flip each training image horizontally with probability 1/2.
    flip: bool = True
    # Side of a square zeroed at a random place in each training image (cutout; DeVries & Taylor,
    # 2017); 0: no cutout.
    cutout: int = 8
    # Average the logits of each test image and its mirror image (test-time augmentation).
    test_flip: bool = True
    # Model and batches in channels_last memory format (faster convolutions on tensor cores).
    channels_last: bool = True
    # Mixed precision via companion.utils.amp: bf16 where supported, else fp16 with a grad scaler.
    amp: bool = True
    # Seeds the weights, the shuffling and the augmentation: a fixed seed gives a fixed run on CPU.
    seed: int = 0
    # Images per forward pass at evaluation time.
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and the fix for settings that cannot work."""
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}"),
            (len(self.widths) == 4 and all(int(w) >= 1 for w in self.widths),
             f"widths must be four positive channel counts (prep, stage 1, 2, 3), got {self.widths}"),
            (self.learning_rate > 0, f"learning_rate must be positive, got {self.learning_rate}"),
            (0 <= self.warmup_fraction < 1, f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.crop_padding >= 0, f"crop_padding must be >= 0 pixels, got {self.crop_padding}"),
            (self.cutout >= 0, f"cutout must be >= 0 pixels, got {self.cutout}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"SpeedrunRecipe: {message}; fix that field.")


@dataclasses.dataclass
class SpeedrunResult:
    """What :func:`train_speedrun` measured."""

    test_accuracy: float  # on the whole test set, with test-time flips if the recipe asks for them
    train_seconds: float  # wall time of the training steps (device synchronised), without evaluation
    eval_seconds: float  # wall time of the final evaluation
    epochs: int
    steps: int
    train_loss: float  # mean loss over the last epoch's batches
    model: nn.Module = dataclasses.field(repr=False)  # the trained network, in eval mode


def conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution (no bias: BN follows), batch norm, ReLU; keeps the spatial size."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class Residual(nn.Module):
    """``x + f(x)`` with ``f`` two conv-BN-ReLU layers of the same width."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """Page's 9-layer residual network for 32x32 images (8 convolutions and a linear layer).

    Args:
        num_classes: number of outputs.
        in_channels: image channels (3 for CIFAR-10).
        widths: channels of the prep layer and of the three stages.
        logit_scale: the logits are multiplied by this (Page: 0.125), which keeps the initial
            softmax soft for a network whose pooled features are large.

    Shapes:
        input ``(B, in_channels, H, W)`` with ``H, W >= 8``; output ``(B, num_classes)``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3,
                 widths: Sequence[int] = (64, 128, 256, 512), logit_scale: float = 0.125) -> None:
        super().__init__()
        prep, width1, width2, width3 = (int(w) for w in widths)
        self.prep = conv_bn(in_channels, prep)  # (B, prep, H, W)
        self.layer1 = nn.Sequential(conv_bn(prep, width1), nn.MaxPool2d(2), Residual(width1))  # (B, w1, H/2, W/2)
        self.layer2 = nn.Sequential(conv_bn(width1, width2), nn.MaxPool2d(2))  # (B, w2, H/4, W/4)
        self.layer3 = nn.Sequential(conv_bn(width2, width3), nn.MaxPool2d(2), Residual(width3))  # (B, w3, H/8, W/8)
        self.classifier = nn.Linear(width3, num_classes, bias=False)
        self.logit_scale = logit_scale
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels or min(x.shape[-2:]) < 8:
            raise ValueError(f"ResNet9 expects (B, {self.in_channels}, H, W) with H, W >= 8, got "
                             f"{tuple(x.shape)}; resize the images or build it with in_channels={x.shape[1]}.")
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))  # (B, w3, H/8, W/8)
        x = torch.amax(x, dim=(2, 3))  # (B, w3): global max pooling
        return self.classifier(x) * self.logit_scale  # (B, num_classes)


def random_crop_flip(images: torch.Tensor, *, padding: int, flip: bool, cutout: int = 0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment a batch on its own device: random crop after reflect padding, flip, cutout.

    The random numbers are drawn on the CPU from ``generator`` (a handful per image) and moved to
    the batch's device, so a seed gives the same augmentation on every device.

    Args:
        images: ``(B, C, H, W)`` float batch.
        padding: pixels of reflect padding on each side before cropping back to ``H x W``.
        flip: flip each image horizontally with probability 1/2.
        cutout: side of a square set to zero at a random centre in each image (0: none).
        generator: CPU random generator.

    Returns:
        The augmented ``(B, C, H, W)`` batch (a new tensor).
    """
    batch, _, height, width = images.shape
    device = images.device
    if padding > 0:
        padded = F.pad(images, (padding,) * 4, mode="reflect")  # (B, C, H+2p, W+2p)
        shift_y = torch.randint(0, 2 * padding + 1, (batch,), generator=generator).to(device)  # (B,)
        shift_x = torch.randint(0, 2 * padding + 1, (batch,), generator=generator).to(device)  # (B,)
        rows = shift_y[:, None] + torch.arange(height, device=device)  # (B, H)
        cols = shift_x[:, None] + torch.arange(width, device=device)  # (B, W)
        index_b = torch.arange(batch, device=device)[:, None, None, None]  # (B, 1, 1, 1)
        index_c = torch.arange(images.shape[1], device=device)[None, :, None, None]  # (1, C, 1, 1)
        images = padded[index_b, index_c, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)
    if flip:
        mirror = (torch.rand(batch, generator=generator) < 0.5).to(device)  # (B,)
        images = torch.where(mirror[:, None, None, None], images.flip(3), images)
    if cutout > 0:
        centre_y = torch.randint(0, height, (batch,), generator=generator).to(device)  # (B,)
        centre_x = torch.randint(0, width, (batch,), generator=generator).to(device)  # (B,)
        ys = torch.arange(height, device=device)[None, :] - centre_y[:, None]  # (B, H)
        xs = torch.arange(width, device=device)[None, :] - centre_x[:, None]  # (B, W)
        half = cutout // 2
        inside_y = (ys >= -half) & (ys < cutout - half)  # (B, H)
        inside_x = (xs >= -half) & (xs < cutout - half)  # (B, W)
        hole = inside_y[:, None, :, None] & inside_x[:, None, None, :]  # (B, 1, H, W)
        images = images.masked_fill(hole, 0.0)
    return images if padding > 0 or flip or cutout > 0 else images.clone()


def one_cycle_linear(step: int, total_steps: int, warmup_fraction: float) -> float:
    """Multiplier of the peak rate at ``step``: linear 0 -> 1 over the warm-up, then 1 -> 0."""
    peak = warmup_fraction * total_steps
    if step < peak:
        return step / peak
    return max(0.0, (total_steps - step) / max(total_steps - peak, 1e-12))


def _images_and_labels(dataset, role: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = getattr(dataset, "images", None), getattr(dataset, "labels", None)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not isinstance(labels, torch.Tensor):
        raise ValueError(f"the {role} set must hold `.images` (N, C, H, W) and `.labels` (N,) tensors, as an "
                         "ArrayDataset does (companion.data.cifar10.load or get_dataset).")
    return images, labels


@torch.no_grad()
def evaluate_speedrun(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, mean: torch.Tensor,
                      std: torch.Tensor, recipe: SpeedrunRecipe, device: torch.device | str) -> float:
    """Accuracy of ``model`` on uint8 ``images`` ``(N, C, H, W)``, with flip test-time augmentation if asked."""
    device = torch.device(device)
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for start in range(0, images.shape[0], recipe.eval_batch_size):
        batch = images[start:start + recipe.eval_batch_size].to(device, non_blocking=True)
        batch = ((batch.float() / 255.0 - mean) / std).contiguous(memory_format=memory_format)  # (B, C, H, W)
        with autocast(device, enabled=recipe.amp):
            logits = model(batch).float()  # (B, classes)
            if recipe.test_flip:
                logits = logits + model(batch.flip(3)).float()  # (B, classes): sum of both views
        correct += (logits.argmax(dim=1) == labels[start:start + recipe.eval_batch_size].to(device)).sum()
    return int(correct.item()) / images.shape[0]


def train_speedrun(recipe: SpeedrunRecipe, train, test, device: torch.device | str) -> SpeedrunResult:
    """Train :class:`ResNet9` on ``train`` with ``recipe`` and measure it on ``test``.

    Args:
        recipe: the settings (validated again here).
        train: an ArrayDataset-like object with uint8 ``.images`` ``(N, C, H, W)`` and ``.labels``
            ``(N,)``; it is copied to ``device`` once and augmented there.
        test: the same for the test set (classified in full).
        device: where to train, e.g. ``"cuda"`` or ``"cpu"``.

    Returns:
        A :class:`SpeedrunResult` with the test accuracy, the training and evaluation seconds (the
        device is synchronised before each clock reading) and the trained model.

    Raises:
        ValueError: a bad recipe, data that are not image tensors, or fewer training images than
            one batch.
    """
    recipe.validate()
    device = torch.device(device)
    train_images, train_labels = _images_and_labels(train, "training")
    test_images, test_labels = _images_and_labels(test, "test")
    if train_images.shape[0] < recipe.batch_size:
        raise ValueError(f"{train_images.shape[0]} training images are fewer than one batch of "
                         f"{recipe.batch_size}; lower batch_size.")
    num_classes = max(len(getattr(train, "classes", ()) or ()), int(train_labels.max()) + 1)
    generator = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)  # the weight initialisation
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model = ResNet9(num_classes, train_images.shape[1], recipe.widths).to(device, memory_format=memory_format)

    # Per-channel statistics of the training images, for normalisation.
    pixels = train_images.to(device).float().div_(255.0)  # (N, C, H, W), on the device once
    mean = pixels.mean(dim=(0, 2, 3), keepdim=True)[0]  # (C, 1, 1)
    std = pixels.std(dim=(0, 2, 3), keepdim=True)[0].clamp_min(1e-6)  # (C, 1, 1)
    inputs = ((pixels - mean) / std).contiguous(memory_format=memory_format)  # (N, C, H, W)
    del pixels
    targets = train_labels.to(device)  # (N,)

    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.learning_rate, momentum=recipe.momentum,
                                nesterov=recipe.momentum > 0, weight_decay=recipe.weight_decay)
    steps_per_epoch = inputs.shape[0] // recipe.batch_size
    total_steps = steps_per_epoch * recipe.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: one_cycle_linear(step, total_steps, recipe.warmup_fraction))
    scaler = grad_scaler(device, recipe.amp)

    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    synchronize()
    started = time.perf_counter()
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float32, device=device)
    for _epoch in range(recipe.epochs):
        order = torch.randperm(inputs.shape[0], generator=generator).to(device)  # (N,)
        loss_sum.zero_()
        for step in range(steps_per_epoch):
            index = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]  # (B,)
            batch = random_crop_flip(inputs[index], padding=recipe.crop_padding, flip=recipe.flip,
                                     cutout=recipe.cutout, generator=generator)  # (B, C, H, W)
            batch = batch.contiguous(memory_format=memory_format)
            with autocast(device, enabled=recipe.amp):
                logits = model(batch)  # (B, classes)
                loss = F.cross_entropy(logits.float(), targets[index], label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += loss.detach()
    synchronize()
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    accuracy = evaluate_speedrun(model, test_images, test_labels, mean=mean, std=std, recipe=recipe, device=device)
    synchronize()
    eval_seconds = time.perf_counter() - started
    return SpeedrunResult(test_accuracy=accuracy, train_seconds=train_seconds, eval_seconds=eval_seconds,
                          epochs=recipe.epochs, steps=total_steps,
                          train_loss=float(loss_sum.item()) / steps_per_epoch, model=model)
