import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from companion.cnn.label_smoothing import LabelSmoothingCrossEntropy
from companion.cnn.recipe import (PerImageTransform, TrainingRecipe, build_augmentation, build_scheduler,
                                  build_training)
from companion.data import ArrayDataset
from companion.engine import fit


def _data(size: int = 64):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (size, 1, 12, 12), dtype=torch.uint8, generator=generator)
    return ArrayDataset(images, torch.randint(0, 3, (size,), generator=generator), ["a", "b", "c"])


def _model():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def test_augmentation_is_per_image_and_keeps_the_size():
    recipe = TrainingRecipe(crop_padding=3, random_erasing=0.5)
    augmented = PerImageTransform(_data(), build_augmentation(recipe, 12))
    torch.manual_seed(0)
    images, labels = augmented.__getitems__(list(range(16)))
    assert images.shape == (16, 1, 12, 12) and labels.shape == (16,)
    originals, _ = _data().__getitems__(list(range(16)))
    # different images get different crops / flips: not all differences are the same
    changed = [(images[i] != originals[i]).any().item() for i in range(16)]
    assert any(changed)
    single, label = augmented[0]
    assert single.shape == (1, 12, 12) and int(label) == int(labels[0])
    assert build_augmentation(dataclasses.replace(recipe, augment=False), 12) is None


def test_flip_only_pipeline_mirrors_or_keeps_each_image():
    recipe = TrainingRecipe(crop_padding=0, horizontal_flip=True)
    transform = build_augmentation(recipe, 12)
    image = torch.rand(1, 12, 12)
    torch.manual_seed(0)
    outputs = [transform(image) for _ in range(20)]
    flipped = sum(torch.equal(out, image.flip(-1)) for out in outputs)
    kept = sum(torch.equal(out, image) for out in outputs)
    assert flipped + kept == 20 and flipped > 0 and kept > 0


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_schedules_warm_up_then_decay(schedule):
    recipe = TrainingRecipe(schedule=schedule, learning_rate=0.2, warmup_fraction=0.25)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=recipe.learning_rate)
    scheduler = build_scheduler(recipe, optimizer, total_steps=40)
    rates = []
    for _ in range(40):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak = max(range(40), key=rates.__getitem__)
    assert 8 <= peak <= 10 and rates[peak] == pytest.approx(0.2, rel=1e-3)
    assert rates[0] < 0.1 and rates[-1] < 0.01
    assert build_scheduler(dataclasses.replace(recipe, schedule="constant"), optimizer, 40) is None


def test_build_training_runs_fit():
    torch.manual_seed(0)
    recipe = TrainingRecipe(epochs=2, batch_size=16, label_smoothing=0.1, channels_last=True)
    model = _model()
    setup = build_training(recipe, model, _data(), _data(32), image_size=12, device="cpu")
    assert isinstance(setup.loss_fn, LabelSmoothingCrossEntropy)
    assert setup.config.channels_last and setup.config.scheduler_interval == "step"
    history = fit(model, setup.optimizer, setup.train_loader, setup.val_loader, config=setup.config,
                  loss_fn=setup.loss_fn, scheduler=setup.scheduler)
    assert len(history.epochs) == 2 and all(0 <= row["val_accuracy"] <= 1 for row in history.epochs)
    plain = build_training(dataclasses.replace(recipe, label_smoothing=0.0, augment=False), _model(),
                           _data(), image_size=12)
    assert plain.loss_fn is F.cross_entropy and plain.val_loader is None


def test_bad_recipes():
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainingRecipe(schedule="linear")
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainingRecipe(label_smoothing=2.0)
    with pytest.raises(ValueError, match="warmup_fraction"):
        TrainingRecipe(warmup_fraction=1.0)
    with pytest.raises(ValueError, match="random_erasing"):
        TrainingRecipe(random_erasing=-1)
