"""The CIFAR-10 speedrun recipe: runs end to end on CPU, is seeded, and refuses impossible settings.

The 94% target itself is measured on a GPU by benchmarks/gpu_targets.py, not here.
"""

import pytest
import torch

from companion.cnn.speedrun import (ResNet9, SpeedrunRecipe, one_cycle_linear, random_crop_flip,
                                    train_speedrun)
from companion.data import ArrayDataset

TINY = dict(epochs=1, batch_size=64, widths=(4, 8, 8, 16), eval_batch_size=100, amp=False)


def random_cifar(size: int, seed: int) -> ArrayDataset:
    """Random uint8 tensors shaped like CIFAR-10 (not CIFAR-10: only the code path is tested)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (size, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (size,), generator=generator)
    return ArrayDataset(images, labels, classes=[str(k) for k in range(10)], name="random")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions are fastest on one thread, and a shared machine makes more threads thrash."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return random_cifar(320, seed=1), random_cifar(200, seed=2)


def test_runs_end_to_end_and_is_deterministic(data):
    train, test = data
    first = train_speedrun(SpeedrunRecipe(**TINY, seed=3), train, test, "cpu")
    second = train_speedrun(SpeedrunRecipe(**TINY, seed=3), train, test, "cpu")
    assert first.steps == 320 // 64 and first.epochs == 1
    assert 0.0 <= first.test_accuracy <= 1.0 and first.train_seconds > 0 and first.eval_seconds > 0
    assert torch.isfinite(torch.tensor(first.train_loss))
    assert first.test_accuracy == second.test_accuracy and first.train_loss == second.train_loss
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    other = train_speedrun(SpeedrunRecipe(**TINY, seed=4), train, test, "cpu")
    assert not torch.equal(other.model.classifier.weight, first.model.classifier.weight)


def test_mixed_precision_and_plain_memory_format_paths(data):
    train, test = data
    recipe = SpeedrunRecipe(**{**TINY, "amp": True, "channels_last": False, "test_flip": False, "cutout": 0})
    result = train_speedrun(recipe, train, test, "cpu")  # bf16 autocast on CPU
    assert 0.0 <= result.test_accuracy <= 1.0 and torch.isfinite(torch.tensor(result.train_loss))


def test_model_output_shape_and_size():
    model = ResNet9(num_classes=10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert ResNet9(num_classes=7, in_channels=1, widths=(4, 8, 8, 16))(torch.randn(3, 1, 28, 28)).shape == (3, 7)
    # Page's ResNet-9: 8 convolutions, 8 batch norms, one linear layer without bias.
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 8
    assert sum(p.numel() for p in model.parameters()) == 6_573_120
    with pytest.raises(ValueError, match="in_channels=1"):
        model(torch.randn(2, 1, 32, 32))


def test_augmentation_keeps_shape_and_content():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    generator = torch.Generator().manual_seed(0)
    same = random_crop_flip(images, padding=0, flip=False, generator=generator)
    assert torch.equal(same, images) and same is not images
    cropped = random_crop_flip(images, padding=2, flip=True, cutout=3, generator=generator)
    assert cropped.shape == images.shape
    flipped = random_crop_flip(images, padding=0, flip=True, generator=torch.Generator().manual_seed(1))
    for original, out in zip(images, flipped):  # every image is itself or its mirror image
        assert torch.equal(out, original) or torch.equal(out, original.flip(2))
    # A crop of a padded image is a shifted window: its centre pixels come from the original.
    shifted = random_crop_flip(images, padding=1, flip=False, generator=generator)
    centre = shifted[:, :, 1:-1, 1:-1]  # (2, 3, 6, 6)
    assert all(any(torch.equal(centre[b], images[b, :, y:y + 6, x:x + 6]) for y in range(3) for x in range(3))
               for b in range(2))
    holes = random_crop_flip(torch.ones(4, 1, 8, 8), padding=0, flip=False, cutout=2, generator=generator)
    assert ((holes == 0).flatten(1).sum(1) <= 4).all() and ((holes == 0).flatten(1).sum(1) >= 1).all()


def test_learning_rate_schedule():
    assert one_cycle_linear(0, 100, 0.2) == 0.0
    assert one_cycle_linear(20, 100, 0.2) == 1.0
    assert one_cycle_linear(60, 100, 0.2) == pytest.approx(0.5)
    assert one_cycle_linear(100, 100, 0.2) == 0.0
    assert one_cycle_linear(0, 10, 0.0) == 1.0


@pytest.mark.parametrize("field, value", [("epochs", 0), ("batch_size", 0), ("widths", (8, 8, 8)),
                                          ("learning_rate", 0.0), ("warmup_fraction", 1.0), ("momentum", 1.0),
                                          ("weight_decay", -1.0), ("label_smoothing", 1.0),
                                          ("crop_padding", -1), ("cutout", -2)])
def test_bad_recipe_values_are_errors(field, value):
    with pytest.raises(ValueError, match=field):
        SpeedrunRecipe(**{field: value})
    recipe = SpeedrunRecipe()
    with pytest.raises(ValueError, match=field):  # also caught when changed after construction
        train_speedrun(_set(recipe, field, value),
                       random_cifar(8, 0), random_cifar(8, 0), "cpu")


def _set(recipe, field, value):
    object.__setattr__(recipe, field, value)
    return recipe


def test_too_few_images_and_wrong_data_are_errors(data):
    train, test = data
    with pytest.raises(ValueError, match="lower batch_size"):
        train_speedrun(SpeedrunRecipe(**{**TINY, "batch_size": 1000}), train, test, "cpu")
    with pytest.raises(ValueError, match="ArrayDataset"):
        train_speedrun(SpeedrunRecipe(**TINY), [(torch.zeros(3, 32, 32), 0)], test, "cpu")
