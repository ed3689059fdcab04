import pytest
import torch
import torch.nn.functional as F

from companion.cnn.label_smoothing import (LabelSmoothingCrossEntropy, label_smoothing_cross_entropy,
                                           smoothed_targets)


def _batch(seed: int = 0, batch: int = 16, classes: int = 7):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=generator) * 3
    target = torch.randint(0, classes, (batch,), generator=generator)
    weight = torch.rand(classes, generator=generator) + 0.2
    return logits, target, weight


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_equals_pytorch(smoothing, reduction, weighted):
    logits, target, weight = _batch()
    weight = weight if weighted else None
    ours = label_smoothing_cross_entropy(logits, target, smoothing, weight=weight, reduction=reduction)
    reference = F.cross_entropy(logits, target, weight=weight, label_smoothing=smoothing,
                                reduction=reduction)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("weighted", [False, True])
def test_ignore_index_equals_pytorch(weighted):
    logits, target, weight = _batch(seed=1)
    target[[2, 5, 9]] = -1
    weight = weight if weighted else None
    for reduction in ("mean", "sum", "none"):
        ours = label_smoothing_cross_entropy(logits, target, 0.2, weight=weight, reduction=reduction,
                                             ignore_index=-1)
        reference = F.cross_entropy(logits, target, weight=weight, label_smoothing=0.2,
                                    reduction=reduction, ignore_index=-1)
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_gradient_equals_pytorch():
    logits, target, weight = _batch(seed=2)
    ours_logits = logits.clone().requires_grad_()
    torch_logits = logits.clone().requires_grad_()
    label_smoothing_cross_entropy(ours_logits, target, 0.1, weight=weight).backward()
    F.cross_entropy(torch_logits, target, weight=weight, label_smoothing=0.1).backward()
    torch.testing.assert_close(ours_logits.grad, torch_logits.grad, rtol=1e-5, atol=1e-6)


def test_equals_cross_entropy_against_the_smoothed_distribution():
    logits, target, _ = _batch(seed=3)
    q = smoothed_targets(target, 7, 0.1)  # (B, K)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(16))
    assert torch.allclose(q.max(dim=1).values, torch.full((16,), 0.9 + 0.1 / 7))
    by_distribution = -(q * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(label_smoothing_cross_entropy(logits, target, 0.1), by_distribution)


def test_minimum_is_at_a_finite_logit_gap():
    # With eps > 0 the loss of a two-class example is minimised at gap log((1 - eps/2) / (eps/2)).
    eps = 0.1
    gaps = torch.linspace(0, 10, 1001)
    logits = torch.stack([gaps, torch.zeros_like(gaps)], dim=1)  # (1001, 2)
    losses = label_smoothing_cross_entropy(logits, torch.zeros(1001, dtype=torch.long), eps,
                                           reduction="none")
    best = gaps[losses.argmin()]
    expected = torch.log(torch.tensor((1 - eps / 2) / (eps / 2)))
    assert abs(best - expected) < 0.011
    plain = F.cross_entropy(logits, torch.zeros(1001, dtype=torch.long), reduction="none")
    assert plain.argmin() == 1000  # without smoothing: the larger the gap the better


def test_module_and_half_precision():
    logits, target, weight = _batch(seed=4)
    module = LabelSmoothingCrossEntropy(0.1, weight=weight)
    assert "smoothing=0.1" in repr(module)
    torch.testing.assert_close(module(logits, target),
                               F.cross_entropy(logits, target, weight=weight, label_smoothing=0.1))
    half = module(logits.bfloat16(), target)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, F.cross_entropy(logits.bfloat16().float(), target, weight=weight,
                                                     label_smoothing=0.1))


def test_bad_input():
    logits, target, _ = _batch()
    with pytest.raises(ValueError, match="smoothing must be in"):
        label_smoothing_cross_entropy(logits, target, 1.5)
    with pytest.raises(ValueError, match="reduction"):
        label_smoothing_cross_entropy(logits, target, reduction="average")
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        label_smoothing_cross_entropy(logits[None], target)
    with pytest.raises(ValueError, match="int64 class indices"):
        label_smoothing_cross_entropy(logits, target.float())
    with pytest.raises(ValueError, match="one entry per class"):
        label_smoothing_cross_entropy(logits, target, weight=torch.ones(3))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 7\)"):
        label_smoothing_cross_entropy(logits, torch.full((16,), 7))
    with pytest.raises(ValueError, match="smoothing must be in"):
        LabelSmoothingCrossEntropy(-0.1)
