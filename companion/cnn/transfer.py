"""Transfer learning: reuse a trained network for a new task.

Three tools, each a few lines, that work on torchvision-style models (and on the companion's models,
which keep torchvision's module names):

- :func:`replace_head` swaps the final classifier for a fresh ``nn.Linear`` with the new number of
  classes (``fc`` in ResNets, the last ``Linear`` of ``classifier`` in VGG, AlexNet, MobileNet and
  DenseNet).
- :func:`freeze` / :func:`unfreeze` stop or restart learning in the parts of a model named by
  module-name prefixes. Freezing also swaps the frozen parts' batch-norm layers for
  ``torchvision.ops.FrozenBatchNorm2d``, so a frozen trunk is really constant: in training mode a
  plain ``BatchNorm2d`` would keep updating its running statistics and normalise with batch
  statistics even with ``requires_grad=False``.
- :func:`parameter_groups` builds optimizer parameter groups with *discriminative* learning rates
  (Howard & Ruder, 2018): the head gets ``base_lr`` and each stage further down gets ``decay`` times
  the rate of the stage above it.

Taught in: book/02_cnn/10_transfer_learning.ipynb.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

# The stages of a torchvision ResNet from the input up: the stem, the four stages, the classifier.
RESNET_STAGES: tuple[tuple[str, ...], ...] = (
    ("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",), ("fc",),
)


def find_classifier(model: nn.Module) -> tuple[str, nn.Linear]:
    """Locate the final classification layer of a torchvision-style model.

    Looks, in order, at ``model.fc`` (ResNet, ResNeXt, GoogLeNet), ``model.classifier`` (DenseNet has
    a single ``Linear`` there; VGG, AlexNet and MobileNet a ``Sequential`` whose last ``Linear`` is
    the classifier), ``model.head`` and ``model.heads``.

    Args:
        model: the network.

    Returns:
        ``(name, layer)``: the dotted module name (e.g. ``"fc"``, ``"classifier.6"``) and the
        ``nn.Linear`` itself.

    Raises:
        ValueError: no such layer was found.
    """
    for attribute in ("fc", "classifier", "head", "heads"):
        candidate = model._modules.get(attribute)
        if isinstance(candidate, nn.Linear):
            return attribute, candidate
        if isinstance(candidate, nn.Sequential):
            for index in reversed(range(len(candidate))):
                if isinstance(candidate[index], nn.Linear):
                    return f"{attribute}.{index}", candidate[index]
    children = ", ".join(model._modules) or "none"
    raise ValueError(
        f"{type(model).__name__} has no final nn.Linear under 'fc', 'classifier', 'head' or 'heads' "
        f"(its top-level modules are: {children}); replace the classifier by hand, e.g. "
        "model.<name> = nn.Linear(in_features, num_classes)."
    )


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Replace the final classifier with a freshly initialised ``nn.Linear(in_features, num_classes)``.

    The new layer has the same input width, bias setting, device and dtype as the old one and
    PyTorch's default initialisation. Everything below it is left untouched. The model is changed
    in place and returned, so ``model = replace_head(model, 5)`` and ``replace_head(model, 5)`` both
    work.

    Args:
        model: a torchvision-style classifier (see :func:`find_classifier`).
        num_classes: outputs of the new head, the number of classes of the new task.

    Returns:
        ``model``, whose head now maps ``(B, in_features)`` to ``(B, num_classes)``.

    Raises:
        ValueError: ``num_classes`` is not a positive integer, or the head cannot be found.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    name, old = find_classifier(model)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                    device=old.weight.device, dtype=old.weight.dtype)
    parent_name, _, child_name = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child_name, new)
    return model


def _matches(name: str, prefixes: Sequence[str]) -> bool:
    """True when ``name`` is one of ``prefixes`` or lies inside one (``"fc"`` covers ``"fc.weight"``)."""
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _as_prefixes(prefixes: str | Iterable[str] | None) -> tuple[str, ...]:
    if prefixes is None:
        return ()
    if isinstance(prefixes, str):
        return (prefixes,)
    return tuple(prefixes)


def _check_prefixes(model: nn.Module, prefixes: Sequence[str], argument: str) -> None:
    names = [name for name, _ in model.named_modules() if name]
    unknown = [prefix for prefix in prefixes if not any(_matches(name, (prefix,)) for name in names)]
    if unknown:
        top = ", ".join(model._modules)
        raise ValueError(f"{argument} names {unknown}, which are not modules of "
                         f"{type(model).__name__}; use dotted module names such as {top}.")


def _replace_modules(model: nn.Module, convert: dict[str, nn.Module]) -> None:
    for name, module in convert.items():
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child_name, module)


def _frozen_batchnorm(layer: nn.BatchNorm2d) -> FrozenBatchNorm2d:
    frozen = FrozenBatchNorm2d(layer.num_features, eps=layer.eps)
    frozen.to(device=layer.running_mean.device, dtype=layer.running_mean.dtype)
    with torch.no_grad():
        frozen.running_mean.copy_(layer.running_mean)
        frozen.running_var.copy_(layer.running_var)
        if layer.affine:
            frozen.weight.copy_(layer.weight)
            frozen.bias.copy_(layer.bias)
    return frozen


def _batchnorm(layer: FrozenBatchNorm2d) -> nn.BatchNorm2d:
    live = nn.BatchNorm2d(layer.weight.shape[0], eps=layer.eps, device=layer.weight.device,
                          dtype=layer.weight.dtype)
    with torch.no_grad():
        live.running_mean.copy_(layer.running_mean)
        live.running_var.copy_(layer.running_var)
        live.weight.copy_(layer.weight)
        live.bias.copy_(layer.bias)
    return live


def freeze(model: nn.Module, except_: str | Iterable[str] | None = None, *,
           freeze_batchnorm: bool = True) -> list[str]:
    """Stop training every parameter except those under the module-name prefixes ``except_``.

    A prefix names a module with its dotted path (``"fc"``, ``"layer4"``, ``"classifier.6"``) and
    covers everything inside it; ``"fc"`` does not cover a sibling called ``"fc2"``.

    With ``freeze_batchnorm`` (the default), every ``BatchNorm2d`` outside ``except_`` becomes a
    ``torchvision.ops.FrozenBatchNorm2d`` with the same statistics, scale and shift: it always
    normalises with the stored running statistics and never updates them, in ``train()`` mode too.
    Its state-dict keys are those of the batch-norm layer (minus ``num_batches_tracked``), and
    :func:`unfreeze` turns it back into a ``BatchNorm2d``.

    Args:
        model: the network, changed in place.
        except_: prefixes of the modules that keep training (e.g. ``"fc"``); None freezes all.
        freeze_batchnorm: also make the frozen parts' batch-norm layers constant.

    Returns:
        The names of the parameters that were frozen, in ``named_parameters`` order.

    Raises:
        ValueError: a prefix in ``except_`` is not a module of ``model``.
    """
    keep = _as_prefixes(except_)
    _check_prefixes(model, keep, "except_")
    frozen: list[str] = []
    for name, param in model.named_parameters():
        if not _matches(name, keep):
            param.requires_grad_(False)
            frozen.append(name)
    if freeze_batchnorm:
        _replace_modules(model, {name: _frozen_batchnorm(module)
                                 for name, module in model.named_modules()
                                 if isinstance(module, nn.BatchNorm2d) and not _matches(name, keep)})
    return frozen


def unfreeze(model: nn.Module, only: str | Iterable[str] | None = None) -> list[str]:
    """Let the parameters under the prefixes ``only`` (all when None) train again.

    ``FrozenBatchNorm2d`` layers under those prefixes become ordinary ``BatchNorm2d`` layers holding
    the same statistics, scale and shift, so they learn and track statistics again.

    Args:
        model: the network, changed in place.
        only: prefixes of the modules to unfreeze, e.g. ``["layer4", "fc"]``; None unfreezes all.

    Returns:
        The names of the parameters that now require gradients and did not before.

    Raises:
        ValueError: a prefix in ``only`` is not a module of ``model``.
    """
    prefixes = _as_prefixes(only)
    _check_prefixes(model, prefixes, "only")

    def selected(name: str) -> bool:
        return only is None or _matches(name, prefixes)

    _replace_modules(model, {name: _batchnorm(module) for name, module in model.named_modules()
                             if isinstance(module, FrozenBatchNorm2d) and selected(name)})
    unfrozen: list[str] = []
    for name, param in model.named_parameters():
        if selected(name) and not param.requires_grad:
            param.requires_grad_(True)
            unfrozen.append(name)
    return unfrozen


def trainable_parameters(model: nn.Module) -> int:
    """Number of scalar parameters with ``requires_grad=True``."""
    return sum(param.numel() for param in model.parameters() if param.requires_grad)


def default_stages(model: nn.Module) -> tuple[tuple[str, ...], ...]:
    """The stages of ``model`` from the input up, as tuples of module-name prefixes.

    For a torchvision-style ResNet (``conv1``, ``bn1``, ``layer1`` ... ``layer4``, ``fc``) this is
    :data:`RESNET_STAGES`; for anything else, each top-level module that has parameters is a stage
    (VGG: ``features``, ``classifier``). Pass ``stages`` to :func:`parameter_groups` for finer
    control.

    Args:
        model: the network.

    Returns:
        A tuple of stages, each a tuple of prefixes.
    """
    top = set(model._modules)
    if all(name in top for stage in RESNET_STAGES for name in stage):
        return RESNET_STAGES
    return tuple((name,) for name, module in model.named_children()
                 if any(True for _ in module.parameters()))


def parameter_groups(model: nn.Module, base_lr: float, decay: float = 1 / 2.6, *,
                     stages: Sequence[Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """Optimizer parameter groups with discriminative (layer-wise) learning rates.

    Stage ``s`` of ``S`` (counted from the input, the last being the head) gets the learning rate
    ``base_lr * decay ** (S - 1 - s)``: the head trains at ``base_lr``, the stage below at
    ``decay * base_lr``, and so on down to the stem. The default decay, ``1 / 2.6``, is the factor
    ULMFiT used between layers (Howard & Ruder, 2018). Frozen parameters (``requires_grad=False``)
    are left out, and so is a stage with none left.

    Args:
        model: the network.
        base_lr: learning rate of the last stage (the head).
        decay: factor between the learning rates of consecutive stages, in ``(0, 1]``; 1 gives every
            stage ``base_lr``.
        stages: tuples of module-name prefixes from the input up; default :func:`default_stages`.

    Returns:
        A list of ``{"params": [...], "lr": float, "name": str}`` dicts, bottom stage first, ready for
        ``torch.optim.SGD(groups, ...)`` or ``AdamW``; with ``OneCycleLR`` pass
        ``max_lr=[group["lr"] for group in groups]``.

    Raises:
        ValueError: ``base_lr`` or ``decay`` out of range, a prefix that is not a module, a parameter
            claimed by two stages, or a trainable parameter that belongs to no stage.
    """
    if not base_lr > 0:
        raise ValueError(f"base_lr must be positive, got {base_lr}.")
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1] (each stage's rate is decay times the rate of the "
                         f"stage above it), got {decay}.")
    stages = tuple(tuple(stage) for stage in (stages if stages is not None else default_stages(model)))
    _check_prefixes(model, [prefix for stage in stages for prefix in stage], "stages")
    owner: dict[str, int] = {}
    for name, _ in model.named_parameters():
        claims = [index for index, stage in enumerate(stages) if _matches(name, stage)]
        if len(claims) > 1:
            raise ValueError(f"parameter {name!r} belongs to stages {claims}; each parameter must "
                             "belong to exactly one stage.")
        if claims:
            owner[name] = claims[0]
    orphans = [name for name, param in model.named_parameters()
               if param.requires_grad and name not in owner]
    if orphans:
        raise ValueError(f"trainable parameters {orphans[:3]}{'...' if len(orphans) > 3 else ''} "
                         "belong to no stage; add their module to `stages` or freeze them.")
    groups: list[dict[str, Any]] = []
    for index, stage in enumerate(stages):
        params = [param for name, param in model.named_parameters()
                  if owner.get(name) == index and param.requires_grad]
        if params:
            groups.append({"params": params, "lr": base_lr * decay ** (len(stages) - 1 - index),
                           "name": "+".join(stage)})
    return groups
