"""Our splits partition the data as promised, and our k-fold folds are scikit-learn's."""

import pytest
import torch
from sklearn.model_selection import KFold, StratifiedKFold

from companion.foundations.splits import (group_split_indices, kfold_indices, random_split_indices,
                                          split_sizes, stratified_kfold_indices, stratified_split_indices)


def _assert_partition(parts, num_examples):
    joined = torch.cat(list(parts))
    assert joined.dtype == torch.long
    assert torch.equal(torch.sort(joined).values, torch.arange(num_examples))  # disjoint and complete


def _imbalanced_labels(seed, num_examples, num_classes):
    generator = torch.Generator().manual_seed(seed)
    weights = torch.rand(num_classes, generator=generator) + 0.2
    return torch.multinomial(weights, num_examples, replacement=True, generator=generator)


@pytest.mark.parametrize("num_examples, fractions", [(100, (0.8, 0.1, 0.1)), (7, (0.5, 0.5)),
                                                     (1001, (0.6, 0.2, 0.2)), (10, (0.34, 0.33, 0.33))])
def test_random_split_is_a_partition_and_equals_torch_random_split(num_examples, fractions):
    parts = random_split_indices(num_examples, fractions, seed=3)
    _assert_partition(parts, num_examples)
    assert [len(part) for part in parts] == split_sizes(num_examples, fractions)
    reference = torch.utils.data.random_split(range(num_examples), fractions,
                                              generator=torch.Generator().manual_seed(3))
    assert [part.tolist() for part in parts] == [list(subset.indices) for subset in reference]


def test_split_sizes_round_like_torch():
    assert split_sizes(10, (0.34, 0.33, 0.33)) == [4, 3, 3]
    assert split_sizes(60000, (5 / 6, 1 / 6)) == [50000, 10000]


@pytest.mark.parametrize("seed", [0, 1])
def test_stratified_split_keeps_class_proportions(seed):
    labels = _imbalanced_labels(seed, 2000, 5)
    parts = stratified_split_indices(labels, (0.7, 0.2, 0.1), seed=seed)
    _assert_partition(parts, len(labels))
    counts = torch.bincount(labels, minlength=5)
    for part, fraction in zip(parts, (0.7, 0.2, 0.1)):
        part_counts = torch.bincount(labels[part], minlength=5)
        assert ((part_counts - fraction * counts).abs() <= 1).all()  # rounding within each class only


def test_group_split_keeps_groups_whole():
    groups = torch.arange(300) // 4  # 75 groups of 4 copies, in random order
    groups = groups[torch.randperm(300, generator=torch.Generator().manual_seed(9))]
    train, val = group_split_indices(groups, (0.8, 0.2), seed=1)
    _assert_partition([train, val], 300)
    train_groups, val_groups = set(groups[train].tolist()), set(groups[val].tolist())
    assert not train_groups & val_groups
    assert len(train_groups) == 60 and len(val_groups) == 15
    assert len(train) == 240 and len(val) == 60


@pytest.mark.parametrize("num_examples, n_splits", [(10, 2), (10, 3), (23, 5), (100, 10), (7, 7)])
def test_kfold_equals_sklearn(num_examples, n_splits):
    folds = kfold_indices(num_examples, n_splits)
    reference = list(KFold(n_splits=n_splits).split(range(num_examples)))
    assert len(folds) == n_splits
    for (train, val), (train_ref, val_ref) in zip(folds, reference):
        assert train.tolist() == train_ref.tolist() and val.tolist() == val_ref.tolist()
    _assert_partition([val for _, val in folds], num_examples)


@pytest.mark.parametrize("num_examples, n_splits", [(23, 5), (100, 4)])
def test_shuffled_kfold_has_sklearn_fold_sizes_and_is_a_partition(num_examples, n_splits):
    folds = kfold_indices(num_examples, n_splits, shuffle=True, seed=2)
    reference = KFold(n_splits=n_splits, shuffle=True, random_state=2).split(range(num_examples))
    assert [len(val) for _, val in folds] == [len(val) for _, val in reference]
    _assert_partition([val for _, val in folds], num_examples)
    for train, val in folds:
        _assert_partition([train, val], num_examples)
    assert folds[0][1].tolist() != list(range(len(folds[0][1])))  # actually shuffled
    assert [v.tolist() for _, v in folds] == [v.tolist() for _, v in kfold_indices(num_examples, n_splits,
                                                                                     shuffle=True, seed=2)]


@pytest.mark.parametrize("seed, num_examples, num_classes, n_splits",
                         [(0, 50, 3, 5), (1, 101, 4, 3), (2, 37, 2, 4), (3, 500, 10, 10), (4, 12, 3, 2)])
def test_stratified_kfold_equals_sklearn(seed, num_examples, num_classes, n_splits):
    labels = _imbalanced_labels(seed, num_examples, num_classes) * 3 + 7  # labels need not be 0..K-1
    folds = stratified_kfold_indices(labels, n_splits)
    reference = list(StratifiedKFold(n_splits=n_splits).split(labels.numpy(), labels.numpy()))
    for (train, val), (train_ref, val_ref) in zip(folds, reference):
        assert train.tolist() == train_ref.tolist() and val.tolist() == val_ref.tolist()
    _assert_partition([val for _, val in folds], num_examples)


def test_shuffled_stratified_kfold_keeps_proportions_and_sklearn_sizes():
    labels = _imbalanced_labels(5, 403, 6)
    folds = stratified_kfold_indices(labels, 5, shuffle=True, seed=1)
    splitter = StratifiedKFold(n_splits=5, shuffle=True, random_state=1)
    reference = splitter.split(labels.numpy(), labels.numpy())
    _assert_partition([val for _, val in folds], len(labels))
    for (_, val), (_, val_ref) in zip(folds, reference):
        assert torch.equal(torch.bincount(labels[val], minlength=6),
                           torch.bincount(torch.from_numpy(labels.numpy()[val_ref]), minlength=6))
    unshuffled = stratified_kfold_indices(labels, 5)
    assert any(not torch.equal(a[1], b[1]) for a, b in zip(folds, unshuffled))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="sum to 1"):
        random_split_indices(10, (0.5, 0.6))
    with pytest.raises(ValueError, match="two or more"):
        split_sizes(10, (1.0,))
    with pytest.raises(ValueError, match="n_splits"):
        kfold_indices(5, 6)
    with pytest.raises(ValueError, match="n_splits"):
        kfold_indices(5, 1)
    with pytest.raises(ValueError, match="1-D integer"):
        stratified_split_indices(torch.rand(10), (0.5, 0.5))
    with pytest.raises(ValueError, match="every class"):
        stratified_kfold_indices(torch.tensor([0, 0, 1, 1]), 3)
    with pytest.warns(UserWarning, match="smallest class"):
        stratified_kfold_indices(torch.tensor([0, 0, 0, 1, 1]), 3)
