"""Train/validation/test splits and k-fold cross-validation, as index tensors.

Every function returns indices into the dataset, so one split can be applied to images, labels and
any metadata alike (``dataset.images[train]``). All randomness comes from an explicit seed.

* :func:`random_split_indices` - a random partition in given fractions; with the same seed it is
  the partition ``torch.utils.data.random_split`` makes.
* :func:`stratified_split_indices` - every class split in the same fractions.
* :func:`group_split_indices` - whole groups (e.g. all photos of one product) go to one part, so
  near-duplicates cannot straddle the split.
* :func:`kfold_indices`, :func:`stratified_kfold_indices` - the folds of
  ``sklearn.model_selection.KFold`` and ``StratifiedKFold``; with ``shuffle=False`` the very same
  folds (``tests/foundations/test_splits.py`` checks it).

Taught in: book/01_foundations/09_generalization_transfer_multitask.ipynb.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    fractions = [float(f) for f in fractions]
    if len(fractions) < 2 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be two or more positive numbers that sum to 1, got "
                         f"{fractions}; e.g. (0.8, 0.1, 0.1) for train, validation and test.")
    return fractions


def split_sizes(num_examples: int, fractions: Sequence[float]) -> list[int]:
    """Sizes of the parts of ``num_examples`` items split in ``fractions``.

    Each part gets ``floor(fraction * num_examples)``; the items left over by the rounding go one
    each to the first parts, as in ``torch.utils.data.random_split``.

    Args:
        num_examples: the number of items to split.
        fractions: positive fractions that sum to 1.

    Returns:
        One size per fraction; they sum to ``num_examples``.
    """
    fractions = _check_fractions(fractions)
    sizes = [math.floor(num_examples * f) for f in fractions]
    for i in range(num_examples - sum(sizes)):
        sizes[i % len(sizes)] += 1
    return sizes


def random_split_indices(num_examples: int, fractions: Sequence[float],
                         seed: int = 0) -> list[torch.Tensor]:
    """A random partition of ``range(num_examples)`` into parts of the given fractions.

    Args:
        num_examples: dataset size ``N``.
        fractions: e.g. ``(0.8, 0.1, 0.1)``; positive, summing to 1.
        seed: seed of the permutation.

    Returns:
        One int64 index tensor per fraction, ``(N_k,)``, disjoint and covering ``range(N)``, in the
        order of a random permutation (the same parts as ``torch.utils.data.random_split`` with a
        generator seeded with ``seed``).
    """
    sizes = split_sizes(num_examples, fractions)
    permutation = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed))  # (N,)
    return list(torch.split(permutation, sizes))


def stratified_split_indices(labels: torch.Tensor, fractions: Sequence[float],
                             seed: int = 0) -> list[torch.Tensor]:
    """A random partition in which every class is split in the given fractions.

    Each class is permuted and cut with :func:`split_sizes`, so the class proportions of every part
    match the whole dataset's up to rounding within each class.

    Args:
        labels: ``(N,)`` integer class labels.
        fractions: positive, summing to 1.
        seed: seed of the permutations.

    Returns:
        One sorted int64 index tensor per fraction, disjoint and covering ``range(N)``.

    Raises:
        ValueError: ``labels`` is not a 1-D integer tensor, or the fractions are invalid.
    """
    _check_labels(labels)
    fractions = _check_fractions(fractions)
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    for label in torch.unique(labels).tolist():  # ascending class order, so the result is stable
        members = torch.nonzero(labels == label).flatten()  # (N_c,)
        members = members[torch.randperm(len(members), generator=generator)]
        for part, chunk in zip(parts, torch.split(members, split_sizes(len(members), fractions))):
            part.append(chunk)
    return [torch.sort(torch.cat(part)).values for part in parts]


def group_split_indices(groups: torch.Tensor, fractions: Sequence[float],
                        seed: int = 0) -> list[torch.Tensor]:
    """A random partition that keeps every group whole.

    The distinct group ids are split with :func:`random_split_indices`; every example follows its
    group. Parts are sized in groups, so their sizes in examples vary with the group sizes.

    Args:
        groups: ``(N,)`` integer group id of every example (e.g. the original an augmented copy
            came from, the patient, the photographer).
        fractions: positive, summing to 1.
        seed: seed of the permutation of the groups.

    Returns:
        One sorted int64 index tensor per fraction, disjoint and covering ``range(N)``; no group id
        occurs in two of them.
    """
    _check_labels(groups, name="groups")
    unique_groups, group_of_example = torch.unique(groups, return_inverse=True)  # (G,), (N,)
    group_parts = random_split_indices(len(unique_groups), fractions, seed)
    parts = []
    for group_part in group_parts:
        member = torch.isin(group_of_example, group_part)  # (N,) bool
        parts.append(torch.nonzero(member).flatten())
    return parts


def kfold_indices(num_examples: int, n_splits: int, shuffle: bool = False,
                  seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(train, validation)`` indices of k-fold cross-validation.

    The examples (in order, or permuted with ``shuffle``) are cut into ``n_splits`` consecutive
    folds; the first ``N % n_splits`` folds have one extra example. Fold ``k`` validates a model
    trained on all the others. With ``shuffle=False`` these are ``sklearn.model_selection.KFold``'s
    folds exactly.

    Args:
        num_examples: dataset size ``N``.
        n_splits: number of folds ``k``, at least 2 and at most ``N``.
        shuffle: permute the examples before cutting them into folds.
        seed: seed of that permutation.

    Returns:
        ``k`` pairs ``(train, validation)`` of sorted int64 index tensors; the validation parts are
        disjoint and together cover ``range(N)``.

    Raises:
        ValueError: ``n_splits`` is below 2 or above ``N``.
    """
    if not 2 <= n_splits <= num_examples:
        raise ValueError(f"n_splits must be between 2 and the number of examples ({num_examples}), "
                         f"got {n_splits}.")
    order = torch.arange(num_examples)
    if shuffle:
        order = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed))
    sizes = [num_examples // n_splits + (1 if k < num_examples % n_splits else 0) for k in range(n_splits)]
    fold_of_example = torch.empty(num_examples, dtype=torch.long)
    fold_of_example[order] = torch.repeat_interleave(torch.arange(n_splits), torch.tensor(sizes))
    return _folds_from_assignment(fold_of_example, n_splits)


def stratified_kfold_indices(labels: torch.Tensor, n_splits: int, shuffle: bool = False,
                             seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """k-fold cross-validation whose folds keep the class proportions of the whole dataset.

    How many examples of each class go to each fold: sort the labels and deal them to the folds
    like cards (example 0 to fold 0, example 1 to fold 1, ...), then count what each fold received.
    The examples of each class then fill their folds in dataset order (fold 0 first), or in random
    order with ``shuffle``. Classes are numbered in order of first appearance. With
    ``shuffle=False`` these are ``sklearn.model_selection.StratifiedKFold``'s folds exactly.

    Args:
        labels: ``(N,)`` integer class labels.
        n_splits: number of folds ``k``, at least 2.
        shuffle: assign each class's examples to its folds in random order.
        seed: seed of that shuffle.

    Returns:
        ``k`` pairs ``(train, validation)`` of sorted int64 index tensors.

    Raises:
        ValueError: ``labels`` is not a 1-D integer tensor, ``n_splits < 2``, or every class has
            fewer than ``n_splits`` examples.
    """
    _check_labels(labels)
    if n_splits < 2:
        raise ValueError(f"n_splits must be at least 2, got {n_splits}.")
    # Number the classes in order of first appearance (0 = the first label in the data).
    classes, inverse = torch.unique(labels, return_inverse=True)  # (K,), (N,)
    first_seen = torch.full((len(classes),), len(labels), dtype=torch.long)
    first_seen.scatter_reduce_(0, inverse, torch.arange(len(labels)), reduce="amin")  # (K,)
    rank_of_class = torch.argsort(torch.argsort(first_seen))  # (K,): 0 for the first seen
    encoded = rank_of_class[inverse]  # (N,)
    counts = torch.bincount(encoded, minlength=len(classes))  # (K,)
    if bool((counts < n_splits).all()):
        raise ValueError(f"n_splits={n_splits} is larger than the number of examples of every class "
                         f"(at most {int(counts.max())}); use fewer folds.")
    if bool((counts < n_splits).any()):
        warnings.warn(f"the smallest class has only {int(counts.min())} examples, fewer than "
                      f"n_splits={n_splits}; some folds will not contain it.", UserWarning, stacklevel=2)
    dealt = torch.sort(encoded).values  # (N,) labels in class order
    allocation = torch.stack([torch.bincount(dealt[fold::n_splits], minlength=len(classes))
                              for fold in range(n_splits)])  # (k, K): examples of class c in fold k
    generator = torch.Generator().manual_seed(seed)
    fold_of_example = torch.empty(len(labels), dtype=torch.long)
    for c in range(len(classes)):
        folds_for_class = torch.repeat_interleave(torch.arange(n_splits), allocation[:, c])  # (N_c,)
        if shuffle:
            folds_for_class = folds_for_class[torch.randperm(len(folds_for_class), generator=generator)]
        fold_of_example[encoded == c] = folds_for_class
    return _folds_from_assignment(fold_of_example, n_splits)


def _folds_from_assignment(fold_of_example: torch.Tensor,
                           n_splits: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    folds = []
    for fold in range(n_splits):
        in_fold = fold_of_example == fold  # (N,) bool
        folds.append((torch.nonzero(~in_fold).flatten(), torch.nonzero(in_fold).flatten()))
    return folds


def _check_labels(labels: torch.Tensor, name: str = "labels") -> None:
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.dtype.is_floating_point \
            or labels.dtype == torch.bool or len(labels) == 0:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{name} must be a non-empty 1-D integer tensor (N,), got {shape}; convert with "
                         f"torch.as_tensor({name}).long().")
