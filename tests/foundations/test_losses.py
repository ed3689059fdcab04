"""The from-scratch losses equal torch.nn.functional, stay finite where the naive formulas overflow,
and satisfy the information-theory identities the chapter uses."""

import pytest
import torch
import torch.nn.functional as F

from companion.foundations.losses import (binary_cross_entropy_with_logits, cross_entropy, entropy, kl_div,
                                          log_softmax, logsumexp, mse_loss, smooth_labels)

TOLERANCE = dict(rtol=1e-6, atol=1e-6)
SHAPES = [(1, 2), (8, 10), (5, 3, 4), (2, 7, 3, 5)]  # (B, K) and (B, K, d1, ...)
REDUCTIONS = ["mean", "sum", "none"]


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def _logits(shape, seed=0, scale=3.0, dtype=torch.float32):
    return scale * torch.randn(shape, generator=_generator(seed), dtype=dtype)


def _labels(shape, seed=1):
    batch_shape = (shape[0], *shape[2:])
    return torch.randint(0, shape[1], batch_shape, generator=_generator(seed))


@pytest.mark.parametrize("shape", [(7,), (4, 5), (2, 3, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_equals_torch(shape, reduction):
    prediction, target = _logits(shape, 0), _logits(shape, 1)
    torch.testing.assert_close(mse_loss(prediction, target, reduction),
                               F.mse_loss(prediction, target, reduction=reduction), **TOLERANCE)


def test_mse_rejects_broadcasting():
    with pytest.raises(ValueError, match="same shape"):
        mse_loss(torch.zeros(4, 1), torch.zeros(4))


@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 6)])
@pytest.mark.parametrize("dim", [0, -1])
def test_logsumexp_and_log_softmax_equal_torch(shape, dim):
    x = _logits(shape, scale=5.0)
    torch.testing.assert_close(logsumexp(x, dim), torch.logsumexp(x, dim), **TOLERANCE)
    torch.testing.assert_close(logsumexp(x, dim, keepdim=True), torch.logsumexp(x, dim, keepdim=True),
                               **TOLERANCE)
    torch.testing.assert_close(log_softmax(x, dim), F.log_softmax(x, dim), **TOLERANCE)
    wide = _logits(shape, scale=500.0, dtype=torch.float64)  # float64: no rounding at this scale
    torch.testing.assert_close(log_softmax(wide, dim), F.log_softmax(wide, dim), rtol=0, atol=1e-12)


def test_logsumexp_extreme_values():
    x = torch.tensor([[1000.0, 0.0], [-1000.0, -1001.0], [float("-inf"), float("-inf")],
                      [float("-inf"), 2.0]])
    torch.testing.assert_close(logsumexp(x, 1), torch.logsumexp(x, 1))
    assert torch.isfinite(logsumexp(x[:2], 1)).all()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
def test_cross_entropy_with_class_indices_equals_torch(shape, reduction, label_smoothing):
    logits, labels = _logits(shape), _labels(shape)
    ours = cross_entropy(logits, labels, reduction=reduction, label_smoothing=label_smoothing)
    expected = F.cross_entropy(logits, labels, reduction=reduction, label_smoothing=label_smoothing)
    torch.testing.assert_close(ours, expected, **TOLERANCE)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_with_probabilities_equals_torch(shape, reduction, label_smoothing):
    logits = _logits(shape)
    probabilities = F.softmax(_logits(shape, seed=3), dim=1)
    ours = cross_entropy(logits, probabilities, reduction=reduction, label_smoothing=label_smoothing)
    expected = F.cross_entropy(logits, probabilities, reduction=reduction, label_smoothing=label_smoothing)
    torch.testing.assert_close(ours, expected, **TOLERANCE)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_cross_entropy_ignore_index_equals_torch(reduction, label_smoothing, ignore_index):
    logits = _logits((12, 5))
    labels = _labels((12, 5))
    labels[::3] = ignore_index
    ours = cross_entropy(logits, labels, reduction=reduction, label_smoothing=label_smoothing,
                         ignore_index=ignore_index)
    expected = F.cross_entropy(logits, labels, reduction=reduction, label_smoothing=label_smoothing,
                               ignore_index=ignore_index)
    torch.testing.assert_close(ours, expected, **TOLERANCE)


def test_cross_entropy_single_example_and_gradients_equal_torch():
    logits = _logits((6,), dtype=torch.float64).requires_grad_(True)
    label = torch.tensor(4)
    ours = cross_entropy(logits, label, label_smoothing=0.1)
    expected = F.cross_entropy(logits, label, label_smoothing=0.1)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)
    (ours_grad,) = torch.autograd.grad(ours, logits)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(ours_grad, expected_grad, rtol=0, atol=1e-12)


def test_cross_entropy_gradient_is_softmax_minus_target():
    logits = _logits((4, 6), dtype=torch.float64).requires_grad_(True)
    labels = _labels((4, 6))
    cross_entropy(logits, labels, reduction="sum", label_smoothing=0.1).backward()
    expected = F.softmax(logits.detach(), dim=1) - smooth_labels(labels, 6, 0.1, dtype=torch.float64)
    torch.testing.assert_close(logits.grad, expected, rtol=0, atol=1e-12)


def test_cross_entropy_finite_for_huge_logits():
    logits = torch.tensor([[0.0, 100.0], [0.0, -200.0], [1e4, -1e4]])
    labels = torch.tensor([0, 1, 1])
    losses = cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(losses, torch.tensor([100.0, 200.0, 2e4]))
    naive = -torch.log(torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True))
    assert not torch.isfinite(naive.gather(1, labels[:, None])).all()


def test_label_smoothing_equals_cross_entropy_with_smoothed_targets():
    logits, labels = _logits((9, 4)), _labels((9, 4))
    targets = smooth_labels(labels, 4, 0.3)
    torch.testing.assert_close(targets.sum(1), torch.ones(9))
    torch.testing.assert_close(targets.gather(1, labels[:, None]).squeeze(1), torch.full((9,), 0.7 + 0.3 / 4))
    torch.testing.assert_close(cross_entropy(logits, labels, label_smoothing=0.3),
                               cross_entropy(logits, targets), **TOLERANCE)


def test_smooth_labels_keeps_spatial_layout():
    labels = _labels((2, 3, 4, 5))  # (2, 4, 5)
    targets = smooth_labels(labels, 3, 0.0)
    assert targets.shape == (2, 3, 4, 5)
    assert torch.equal(targets.argmax(1), labels)


def test_cross_entropy_bad_inputs():
    logits, labels = _logits((4, 3)), _labels((4, 3))
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy(logits, labels, reduction="batchmean")
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy(logits, labels, label_smoothing=1.5)
    with pytest.raises(ValueError, match="shape"):
        cross_entropy(logits, labels[:3])
    with pytest.raises(ValueError, match="probability targets"):
        cross_entropy(logits, torch.rand(4, 2))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cross_entropy(logits, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="smoothing"):
        smooth_labels(labels, 3, -0.1)
    with pytest.raises(ValueError, match="num_classes"):
        smooth_labels(labels, 2)


@pytest.mark.parametrize("shape", [(10,), (4, 3), (2, 3, 5)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_with_logits_equals_torch(shape, reduction):
    logits = _logits(shape, scale=30.0)
    soft_targets = torch.rand(shape, generator=_generator(2))
    hard_targets = (soft_targets > 0.5).float()
    for targets in (soft_targets, hard_targets):
        torch.testing.assert_close(binary_cross_entropy_with_logits(logits, targets, reduction),
                                   F.binary_cross_entropy_with_logits(logits, targets, reduction=reduction),
                                   **TOLERANCE)


def test_binary_cross_entropy_stable_where_naive_fails():
    logits = torch.tensor([-200.0, 200.0, 50.0])
    targets = torch.tensor([1.0, 0.0, 1.0])
    losses = binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(losses, torch.tensor([200.0, 200.0, 0.0]), rtol=0, atol=1e-6)
    probability = torch.sigmoid(logits)
    naive = -(targets * torch.log(probability) + (1 - targets) * torch.log(1 - probability))
    assert not torch.isfinite(naive[:2]).any()
    with pytest.raises(ValueError, match="same shape"):
        binary_cross_entropy_with_logits(torch.zeros(4, 1), torch.zeros(4))


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")  # PyTorch warns that "mean" is not KL
@pytest.mark.parametrize("shape", [(5, 4), (3, 6, 2)])
@pytest.mark.parametrize("reduction", ["batchmean", "sum", "mean", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_equals_torch(shape, reduction, log_target):
    log_q = F.log_softmax(_logits(shape, 0), dim=1)
    p = F.softmax(_logits(shape, 1), dim=1)
    if not log_target:
        p[0, 0] = 0.0  # a zero probability contributes 0 (0 log 0 = 0); log p would be -inf
    target = p.log() if log_target else p
    torch.testing.assert_close(kl_div(log_q, target, reduction=reduction, log_target=log_target),
                               F.kl_div(log_q, target, reduction=reduction, log_target=log_target),
                               **TOLERANCE)


def test_kl_div_is_nonnegative_and_zero_only_for_equal_distributions():
    log_q = F.log_softmax(_logits((6, 5), 0), dim=1)
    p = F.softmax(_logits((6, 5), 1), dim=1)
    assert kl_div(log_q, p, reduction="none").sum(1).min() > 0
    torch.testing.assert_close(kl_div(log_q, log_q.exp()), torch.tensor(0.0), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        kl_div(log_q, p, reduction="average")


def test_cross_entropy_is_entropy_plus_kl():
    p = F.softmax(_logits((7, 5), 0, dtype=torch.float64), dim=1)
    logits = _logits((7, 5), 1, dtype=torch.float64)
    per_example_ce = cross_entropy(logits, p, reduction="none")  # (7,)
    per_example_kl = kl_div(F.log_softmax(logits, 1), p, reduction="none").sum(1)  # (7,)
    torch.testing.assert_close(per_example_ce, entropy(p, dim=1) + per_example_kl, rtol=0, atol=1e-12)
    one_hot = smooth_labels(torch.tensor([0, 3]), 5, 0.0, dtype=torch.float64)
    assert entropy(one_hot).abs().max() == 0
    torch.testing.assert_close(entropy(torch.full((4,), 0.25)), torch.log(torch.tensor(4.0)))


def test_cross_entropy_upcasts_half_precision_logits():
    logits, labels = _logits((8, 10)), _labels((8, 10))
    ours = cross_entropy(logits.bfloat16(), labels, label_smoothing=0.1)
    assert ours.dtype == torch.float32
    expected = F.cross_entropy(logits.bfloat16().float(), labels, label_smoothing=0.1)
    torch.testing.assert_close(ours, expected, **TOLERANCE)
