"""Loss functions from scratch: squared error, cross-entropy, binary cross-entropy, KL divergence.

Every loss here takes what the network outputs (logits, or log-probabilities for the KL divergence)
and is written with the numerically stable formula, never by exponentiating first and taking the
logarithm afterwards. Each one equals its ``torch.nn.functional`` counterpart, with the same
arguments and the same ``reduction`` conventions; ``tests/foundations/test_losses.py`` checks it.

Shapes: ``B`` examples, ``K`` classes; cross-entropy also accepts extra dimensions ``(B, K, d1, ...)``
as ``F.cross_entropy`` does (one prediction per pixel in segmentation).

Taught in: book/01_foundations/05_losses.ipynb.
"""

from __future__ import annotations

import torch

REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction: str, allowed: tuple[str, ...] = REDUCTIONS) -> None:
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {', '.join(repr(r) for r in allowed)}, got {reduction!r}.")


def _reduce(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.mean()


def mse_loss(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Squared error ``(input - target)^2``, element by element, then reduced.

    Equals ``torch.nn.functional.mse_loss``. Note that ``"mean"`` averages over *all* elements: for
    ``(B, K)`` predictions it divides the summed error by ``B * K``, not by ``B``.

    Args:
        input: predictions, any shape.
        target: targets, the same shape.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per element, the input's shape).

    Returns:
        A ``()`` tensor, or the per-element errors for ``"none"``.

    Raises:
        ValueError: the shapes differ (``F.mse_loss`` would broadcast them, usually by mistake) or the
            reduction is unknown.
    """
    _check_reduction(reduction)
    if input.shape != target.shape:
        raise ValueError(f"input {tuple(input.shape)} and target {tuple(target.shape)} must have the same "
                         "shape; broadcasting them is almost always a bug (e.g. (B, 1) against (B,)).")
    return _reduce((input - target) ** 2, reduction)


def logsumexp(x: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """``log(sum(exp(x)))`` along ``dim`` without overflow or underflow.

    With ``m = max(x)``, ``log sum exp(x) = m + log sum exp(x - m)``: every ``x - m <= 0``, so no
    exponential overflows, and the largest term is ``exp(0) = 1``, so the sum never underflows to 0.
    Equals ``torch.logsumexp``.

    Args:
        x: any shape.
        dim: the dimension to reduce.
        keepdim: keep ``dim`` with size 1.

    Returns:
        ``x`` with ``dim`` reduced.
    """
    maximum = x.amax(dim=dim, keepdim=True)  # (..., 1, ...)
    # A row of -inf (or +inf) would give inf - inf = nan below; shifting it by 0 keeps the exact result.
    maximum = torch.where(torch.isfinite(maximum), maximum, torch.zeros_like(maximum)).detach()
    result = maximum + torch.log(torch.exp(x - maximum).sum(dim=dim, keepdim=True))  # (..., 1, ...)
    return result if keepdim else result.squeeze(dim)


def log_softmax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Log-probabilities ``log softmax(z)_k = z_k - log sum_j exp(z_j)``, computed stably.

    Args:
        logits: any shape.
        dim: the class dimension.

    Returns:
        Log-probabilities, the shape of ``logits``; their exponentials sum to 1 along ``dim``.
    """
    return logits - logsumexp(logits, dim=dim, keepdim=True)


def smooth_labels(target: torch.Tensor, num_classes: int, smoothing: float = 0.0, *,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Turn class indices into label-smoothed target distributions.

    ``q = (1 - smoothing) * one_hot(target) + smoothing / num_classes``: the uniform distribution over
    all ``K`` classes, the true one included, gets weight ``smoothing`` (Szegedy et al., 2016, and
    ``F.cross_entropy(label_smoothing=...)``). The true class gets ``1 - smoothing + smoothing / K``.

    Args:
        target: ``(B,)`` (or ``(B, d1, ...)``) int64 class indices in ``[0, num_classes)``.
        num_classes: K.
        smoothing: in ``[0, 1]``; 0 gives one-hot vectors.
        dtype: floating dtype of the result.

    Returns:
        ``(B, K)`` (or ``(B, K, d1, ...)``) distributions, on the target's device.

    Raises:
        ValueError: ``smoothing`` is outside ``[0, 1]`` or a label is outside ``[0, num_classes)``.
    """
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing must be in [0, 1], got {smoothing}.")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got values from {int(target.min())} to "
                         f"{int(target.max())}; pass num_classes larger than the largest label.")
    one_hot = torch.nn.functional.one_hot(target, num_classes).to(dtype)  # (B, ..., K)
    one_hot = one_hot.movedim(-1, 1) if target.dim() > 1 else one_hot  # (B, K, ...)
    return one_hot * (1.0 - smoothing) + smoothing / num_classes


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean",
                  label_smoothing: float = 0.0, ignore_index: int = -100) -> torch.Tensor:
    """Cross-entropy between the softmax of ``logits`` and the targets, from the logits.

    For a class index ``y`` the loss is ``-log softmax(z)_y = logsumexp(z) - z_y``. With label
    smoothing ``eps`` the target is ``(1 - eps) one_hot(y) + eps / K``, so the loss is
    ``(1 - eps) (-log p_y) + eps * mean_k(-log p_k)``. Targets can also be probabilities (a tensor
    shaped like the logits); then the loss is ``-sum_k q_k log p_k``. Equals
    ``torch.nn.functional.cross_entropy`` with the same arguments (no class weights).

    Args:
        logits: ``(B, K)`` or ``(B, K, d1, ...)`` unnormalised scores; ``(K,)`` for one example.
        target: ``(B,)`` / ``(B, d1, ...)`` int64 class indices, or float probabilities shaped like
            ``logits``.
        reduction: ``"mean"`` (over the examples whose label is not ``ignore_index``), ``"sum"`` or
            ``"none"`` (one loss per example, 0 for ignored ones).
        label_smoothing: ``eps`` in ``[0, 1]``.
        ignore_index: class-index targets equal to it contribute nothing (padding, unlabelled pixels).

    Returns:
        A ``()`` tensor, or ``(B,)`` / ``(B, d1, ...)`` losses for ``"none"``; float32 for float16 or
        bfloat16 logits, which are upcast first (autocast does the same for ``F.cross_entropy``).

    Raises:
        ValueError: unknown reduction, ``label_smoothing`` outside ``[0, 1]``, or shapes that do not fit.
    """
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}.")
    if logits.dim() == 1:  # a single example: (K,) with a () target or (K,) probabilities
        target = target.unsqueeze(0)
        losses = cross_entropy(logits.unsqueeze(0), target, reduction="none", label_smoothing=label_smoothing,
                               ignore_index=ignore_index)  # (1,)
        return losses.squeeze(0) if reduction == "none" else _reduce(losses, reduction)
    num_classes = logits.shape[1]
    if logits.dtype in (torch.float16, torch.bfloat16):  # as under autocast: softmax sums need float32
        logits = logits.float()
    log_probs = log_softmax(logits, dim=1)  # (B, K, ...)

    if target.dtype.is_floating_point:  # class probabilities
        if target.shape != logits.shape:
            raise ValueError(f"probability targets must have the logits' shape {tuple(logits.shape)}, got "
                             f"{tuple(target.shape)}; for class indices pass an int64 tensor.")
        target = target * (1.0 - label_smoothing) + label_smoothing / num_classes  # (B, K, ...)
        losses = -(target * log_probs).sum(dim=1)  # (B, ...)
        return _reduce(losses, reduction)

    if target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"class-index targets for logits {tuple(logits.shape)} must have shape "
                         f"{(logits.shape[0], *logits.shape[2:])}, got {tuple(target.shape)}.")
    keep = target != ignore_index  # (B, ...)
    safe_target = torch.where(keep, target, torch.zeros_like(target))  # any valid index for ignored ones
    if safe_target.numel() and (int(safe_target.min()) < 0 or int(safe_target.max()) >= num_classes):
        raise ValueError(f"class indices must be in [0, {num_classes}) or equal ignore_index={ignore_index}.")
    true_class = -log_probs.gather(1, safe_target.unsqueeze(1)).squeeze(1)  # (B, ...): -log p_y
    uniform = -log_probs.mean(dim=1)  # (B, ...): the mean of -log p_k over the K classes
    losses = (1.0 - label_smoothing) * true_class + label_smoothing * uniform  # (B, ...)
    losses = torch.where(keep, losses, torch.zeros_like(losses))
    if reduction == "mean":
        return losses.sum() / keep.sum()  # nan when every label is ignored, as in PyTorch
    return _reduce(losses, reduction)


def binary_cross_entropy_with_logits(logits: torch.Tensor, target: torch.Tensor,
                                     reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy of ``sigmoid(logits)`` against targets in ``[0, 1]``, from the logits.

    ``-t log sigmoid(z) - (1 - t) log(1 - sigmoid(z))`` simplifies to ``softplus(z) - t z`` and
    ``softplus(z) = max(z, 0) + log(1 + exp(-|z|))``; the exponent is never positive, so nothing
    overflows, and ``log1p`` keeps precision when ``exp(-|z|)`` is tiny. Equals
    ``torch.nn.functional.binary_cross_entropy_with_logits`` (without ``weight``/``pos_weight``).

    Args:
        logits: any shape.
        target: the same shape, probabilities of the positive class (0/1 labels or soft labels).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        A ``()`` tensor, or per-element losses for ``"none"``.

    Raises:
        ValueError: the shapes differ or the reduction is unknown.
    """
    _check_reduction(reduction)
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same "
                         "shape (squeeze a trailing dimension of size 1, or convert labels with .float()).")
    losses = logits.clamp(min=0) - logits * target + torch.log1p(torch.exp(-logits.abs()))
    return _reduce(losses, reduction)


def entropy(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy ``H(p) = -sum_k p_k log p_k`` in nats, with ``0 log 0 = 0``.

    Args:
        probs: probabilities along ``dim`` (each slice sums to 1).
        dim: the class dimension.

    Returns:
        ``probs`` with ``dim`` reduced.
    """
    return -torch.special.xlogy(probs, probs).sum(dim=dim)


def kl_div(input: torch.Tensor, target: torch.Tensor, reduction: str = "batchmean",
           log_target: bool = False) -> torch.Tensor:
    """Kullback-Leibler divergence ``KL(p || q) = sum p (log p - log q)``, in PyTorch's argument order.

    As in ``torch.nn.functional.kl_div``, ``input`` is ``log q``, the model's **log**-probabilities,
    and ``target`` is ``p``, the reference distribution (or ``log p`` when ``log_target=True``). The
    pointwise term is ``p (log p - log q)``, taken as 0 where ``p = 0``.

    Reductions, as in PyTorch: ``"batchmean"`` divides the sum by the batch size ``input.shape[0]``
    and is the mean KL divergence per example; ``"sum"``; ``"none"`` (pointwise terms); ``"mean"``
    divides by the number of *elements* ``B * K`` and is not a KL divergence. Unlike PyTorch, whose
    default is ``"mean"``, the default here is ``"batchmean"``.

    Args:
        input: ``(B, K)`` (or any shape) log-probabilities of the model.
        target: the same shape: probabilities, or log-probabilities with ``log_target=True``.
        reduction: ``"batchmean"``, ``"sum"``, ``"mean"`` or ``"none"``.
        log_target: whether ``target`` holds log-probabilities.

    Returns:
        A ``()`` tensor, or the pointwise terms for ``"none"``.

    Raises:
        ValueError: the shapes differ or the reduction is unknown.
    """
    _check_reduction(reduction, ("none", "batchmean", "sum", "mean"))
    if input.shape != target.shape:
        raise ValueError(f"input {tuple(input.shape)} and target {tuple(target.shape)} must have the same shape.")
    if log_target:
        pointwise = torch.exp(target) * (target - input)
    else:
        pointwise = torch.special.xlogy(target, target) - target * input  # p log p - p log q; 0 where p = 0
    if reduction == "batchmean":
        return pointwise.sum() / (input.shape[0] if input.dim() > 0 else 1)
    return _reduce(pointwise, reduction)
