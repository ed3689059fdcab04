"""The model registry: every model the companion provides, by name.

Tests iterate over it (forward without NaN, gradients reach every parameter, channels_last
agrees with contiguous) and ``python -m companion.doctor`` runs each one under AMP on a GPU.
Builders are imported lazily, so importing this module stays cheap.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

import torch


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: str  # "package.module:function", imported on first use
    input_shape: tuple[int, ...]  # one example's shape, for smoke tests, e.g. (1, 28, 28)
    kwargs: dict = dataclasses.field(default_factory=dict)  # arguments for the smoke-test build
    chapter: str = ""  # the notebook that teaches it

    def build(self, **overrides) -> torch.nn.Module:
        module_name, function_name = self.builder.split(":")
        builder: Callable[..., torch.nn.Module] = getattr(importlib.import_module(module_name), function_name)
        return builder(**{**self.kwargs, **overrides})


_MODELS: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> None:
    if entry.name in _MODELS:
        raise ValueError(f"model {entry.name!r} is registered twice")
    _MODELS[entry.name] = entry


def list_models() -> list[str]:
    """Names of every registered model."""
    return sorted(_MODELS)


def model_entry(name: str) -> ModelEntry:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered models are: {', '.join(list_models())}.")
    return _MODELS[name]


def build_model(name: str, **kwargs) -> torch.nn.Module:
    """Build a registered model; keyword arguments override its defaults."""
    return model_entry(name).build(**kwargs)


register_model(ModelEntry("mlp", "companion.foundations.mlp:mlp", (1, 28, 28),
                          {"in_features": 784, "hidden_sizes": (256,), "num_classes": 10},
                          "book/01_foundations/02_mlp_fashion_mnist.ipynb"))
register_model(ModelEntry("lenet5", "companion.cnn.lenet:lenet5", (1, 32, 32), {"variant": "classic"},
                          "book/02_cnn/02_lenet.ipynb"))
register_model(ModelEntry("lenet5_bn", "companion.cnn.lenet:lenet5", (1, 32, 32), {"variant": "bn"},
                          "book/02_cnn/02_lenet.ipynb"))
