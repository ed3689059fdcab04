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

# Part 2: the classic architectures. The smoke-test build uses the small-input stem (28x28 or 32x32,
# one channel, 10 classes); the builders' defaults are the ImageNet configurations.
_SMALL = {"num_classes": 10, "in_channels": 1, "small_input": True}
_CNN = [
    ("alexnet", "alexnet:alexnet", (1, 28, 28), _SMALL, "03_alexnet"),
    ("alexnet_mini", "alexnet:alexnet_mini", (1, 28, 28), {}, "03_alexnet"),
    ("vgg11", "vgg:vgg11", (1, 28, 28), _SMALL, "04_vgg"),
    ("vgg16", "vgg:vgg16", (1, 28, 28), _SMALL, "04_vgg"),
    ("vgg19", "vgg:vgg19", (1, 28, 28), _SMALL, "04_vgg"),
    ("vgg_mini", "vgg:vgg_mini", (1, 28, 28), {}, "04_vgg"),
    ("googlenet", "googlenet:googlenet", (1, 28, 28), {**_SMALL, "aux_logits": False}, "05_inception"),
    ("inception_v3", "inception_v3:inception_v3", (1, 32, 32), {**_SMALL, "aux_logits": False}, "05_inception"),
    ("inception_mini", "googlenet:inception_mini", (1, 28, 28), {}, "05_inception"),
    ("resnet18", "resnet:resnet18", (1, 28, 28), _SMALL, "06_resnet"),
    ("resnet34", "resnet:resnet34", (1, 28, 28), _SMALL, "06_resnet"),
    ("resnet50", "resnet:resnet50", (1, 28, 28), _SMALL, "06_resnet"),
    ("resnet101", "resnet:resnet101", (1, 28, 28), _SMALL, "06_resnet"),
    ("resnet152", "resnet:resnet152", (1, 28, 28), _SMALL, "06_resnet"),
    ("resnext50_32x4d", "resnet:resnext50_32x4d", (1, 28, 28), _SMALL, "06_resnet"),
    ("resnet_mini", "resnet:resnet_mini", (1, 28, 28), {}, "06_resnet"),
    ("plain_mini", "resnet:plain_mini", (1, 28, 28), {}, "06_resnet"),
    ("densenet121", "densenet:densenet121", (1, 28, 28), _SMALL, "07_densenet"),
    ("densenet_mini", "densenet:densenet_mini", (1, 28, 28), {}, "07_densenet"),
    ("mobilenet_v1", "mobilenet:mobilenet_v1", (1, 28, 28), _SMALL, "08_mobilenet"),
    ("mobilenet_v2", "mobilenet:mobilenet_v2", (1, 28, 28), _SMALL, "08_mobilenet"),
    ("mobilenet_mini", "mobilenet:mobilenet_mini", (1, 28, 28), {}, "08_mobilenet"),
]
for _name, _builder, _shape, _kwargs, _chapter in _CNN:
    register_model(ModelEntry(_name, f"companion.cnn.{_builder}", _shape, dict(_kwargs),
                              f"book/02_cnn/{_chapter}.ipynb"))
