"""Dice and focal losses: direct formulas, cross-entropy at gamma = 0, ignore_index, gradients."""

import pytest
import torch
import torch.nn.functional as F

from companion.segmentation.losses import dice_loss, focal_loss


def random_batch(seed, num_classes=4, shape=(2, 5, 7), ignore_fraction=0.0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape[0], num_classes, *shape[1:], generator=generator, dtype=torch.float64)
    target = torch.randint(0, num_classes, shape, generator=generator)
    if ignore_fraction:
        target[torch.rand(shape, generator=generator) < ignore_fraction] = 255
    return logits, target


def direct_dice(logits, target, smooth=1.0):
    """V-Net's soft Dice per class with explicit loops over classes."""
    num_classes = logits.shape[1]
    probabilities = logits.softmax(dim=1)
    valid = target != 255
    scores = []
    for c in range(num_classes):
        p = probabilities[:, c][valid]
        g = (target[valid] == c).double()
        scores.append((2 * (p * g).sum() + smooth) / ((p * p).sum() + (g * g).sum() + smooth))
    return 1 - torch.stack(scores).mean()


def direct_focal(logits, target, gamma, alpha=None):
    total, count = 0.0, 0
    probabilities = logits.softmax(dim=1)
    for b, i, j in torch.nonzero(target != 255).tolist():
        t = int(target[b, i, j])
        p_t = probabilities[b, t, i, j]
        weight = 1.0 if alpha is None else alpha[t]
        total = total - weight * (1 - p_t) ** gamma * torch.log(p_t)
        count += 1
    return total / count


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("ignore_fraction", [0.0, 0.3])
def test_dice_equals_the_direct_formula(seed, ignore_fraction):
    logits, target = random_batch(seed, ignore_fraction=ignore_fraction)
    assert torch.allclose(dice_loss(logits, target), direct_dice(logits, target), atol=1e-12)
    assert torch.allclose(dice_loss(logits, target, smooth=1e-3), direct_dice(logits, target, smooth=1e-3),
                          atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("ignore_fraction", [0.0, 0.3])
def test_focal_equals_cross_entropy_at_gamma_zero(seed, ignore_fraction):
    logits, target = random_batch(seed, ignore_fraction=ignore_fraction)
    expected = F.cross_entropy(logits, target, ignore_index=255)
    assert torch.allclose(focal_loss(logits, target, gamma=0.0), expected, atol=1e-12)
    weights = torch.tensor([0.25, 1.0, 2.0, 0.5], dtype=torch.float64)
    summed = F.cross_entropy(logits, target, weight=weights, ignore_index=255, reduction="sum")
    assert torch.allclose(focal_loss(logits, target, gamma=0.0, alpha=weights, reduction="sum"), summed,
                          atol=1e-12)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
def test_focal_equals_the_direct_formula(gamma):
    logits, target = random_batch(2, ignore_fraction=0.2)
    alpha = [0.25, 1.0, 2.0, 0.5]
    assert torch.allclose(focal_loss(logits, target, gamma=gamma), direct_focal(logits, target, gamma),
                          atol=1e-12)
    assert torch.allclose(focal_loss(logits, target, gamma=gamma, alpha=alpha),
                          direct_focal(logits, target, gamma, alpha), atol=1e-12)
    assert torch.allclose(focal_loss(logits, target, gamma=gamma, alpha=0.25),
                          0.25 * focal_loss(logits, target, gamma=gamma), atol=1e-12)


def test_focal_down_weights_easy_pixels():
    logits, target = random_batch(3)
    losses = [float(focal_loss(logits, target, gamma=g)) for g in (0.0, 1.0, 2.0, 5.0)]
    assert losses == sorted(losses, reverse=True)
    per_pixel = focal_loss(logits, target, reduction="none")
    assert per_pixel.shape == target.shape
    assert torch.allclose(per_pixel.mean(), focal_loss(logits, target))


@pytest.mark.parametrize("loss_fn", [dice_loss, focal_loss])
def test_ignored_pixels_change_nothing(loss_fn):
    logits, target = random_batch(4, ignore_fraction=0.3)
    ignored = target == 255
    other_logits = torch.where(ignored.unsqueeze(1), torch.randn_like(logits) * 10, logits)
    assert torch.allclose(loss_fn(logits, target), loss_fn(other_logits, target), atol=1e-12)
    logits.requires_grad_(True)
    loss_fn(logits, target).backward()
    assert (logits.grad.movedim(1, -1)[ignored] == 0).all()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("loss_fn", [dice_loss, focal_loss])
def test_gradients_are_finite_even_for_confident_logits(loss_fn):
    logits, target = random_batch(5)
    logits = (logits * 50).float().requires_grad_(True)
    loss = loss_fn(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_perfect_prediction_gives_zero_dice_loss_and_wrong_gives_high():
    _, target = random_batch(6)
    perfect = F.one_hot(target, 4).movedim(-1, 1).double() * 40  # (B, C, H, W)
    assert float(dice_loss(perfect, target)) == pytest.approx(0.0, abs=1e-9)
    assert float(focal_loss(perfect, target)) == pytest.approx(0.0, abs=1e-9)
    wrong = F.one_hot((target + 1) % 4, 4).movedim(-1, 1).double() * 40
    assert float(dice_loss(wrong, target)) > 0.95


def test_dice_pushes_a_rare_class_harder_than_cross_entropy():
    # one background-sized and one single-pixel class, both predicted 50/50
    target = torch.zeros(1, 10, 10, dtype=torch.int64)
    target[0, 0, 0] = 1
    ratios = []
    for loss_fn in (lambda logits, t: dice_loss(logits, t, smooth=1e-6), F.cross_entropy):
        logits = torch.zeros(1, 2, 10, 10, dtype=torch.float64, requires_grad=True)
        loss_fn(logits, target).backward()
        assert logits.grad[0, 1, 0, 0] < 0 < logits.grad[0, 1, 5, 5]  # class 1 up on its pixel, down elsewhere
        ratios.append(float(-logits.grad[0, 1, 0, 0] / logits.grad[0, 1, 5, 5]))
    dice_ratio, cross_entropy_ratio = ratios
    assert cross_entropy_ratio == pytest.approx(1.0)  # every pixel weighs the same
    assert dice_ratio > 5 * cross_entropy_ratio  # the rare pixel weighs several background pixels


def test_bad_inputs_raise_clear_errors():
    logits, target = random_batch(0)
    with pytest.raises(ValueError, match="target must have shape"):
        dice_loss(logits, target[:, :3])
    with pytest.raises(ValueError, match="integer class mask"):
        focal_loss(logits, target.float())
    with pytest.raises(ValueError, match="floating-point"):
        dice_loss(logits.long(), target)
    with pytest.raises(ValueError, match="outside"):
        focal_loss(logits, target + 1)
    with pytest.raises(ValueError, match="smooth"):
        dice_loss(logits, target, smooth=0.0)
    with pytest.raises(ValueError, match="gamma"):
        focal_loss(logits, target, gamma=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        focal_loss(logits, target, alpha=[1.0, 2.0])
    with pytest.raises(ValueError, match="reduction"):
        focal_loss(logits, target, reduction="max")
