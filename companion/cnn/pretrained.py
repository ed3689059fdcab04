"""Loading torchvision's ImageNet weights into the companion's own models.

The companion's ImageNet-configuration models keep torchvision's parameter names, so the published
weights load into them with strict keys. Downloading needs the internet: offline, or when the
download fails, :func:`load_imagenet_weights` raises :class:`~companion.data.download.DownloadError`
(the quick profile of the book skips the pretrained sections instead).

Taught in: book/02_cnn/06_resnet.ipynb.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any, Callable

from torch import nn

from companion.data.download import DownloadError

logger = logging.getLogger(__name__)


def imagenet_weights(name: str) -> Any:
    """torchvision's default ImageNet weights entry for architecture ``name`` (nothing is downloaded).

    Args:
        name: a torchvision model name, e.g. ``"resnet50"``.

    Returns:
        The ``WeightsEnum`` member (``.url``, ``.meta``, ``.transforms()``).

    Raises:
        ValueError: torchvision has no pretrained weights under that name.
    """
    import torchvision  # heavy import, only when asked

    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError) as exc:
        raise ValueError(f"torchvision has no pretrained weights for {name!r}; use a name from "
                         "torchvision.models.list_models(), e.g. 'resnet50'.") from exc


def _download_state_dict(weights: Any) -> dict[str, Any]:
    """Fetch (or read from torch's cache) the state dict of ``weights``; torch's messages are logged."""
    messages = io.StringIO()
    with contextlib.redirect_stderr(messages):  # torch.hub writes 'Downloading: ...' to stderr
        state_dict = weights.get_state_dict(progress=False)
    if messages.getvalue().strip():
        logger.info(messages.getvalue().strip())
    return state_dict


def load_imagenet_weights(model: nn.Module, name: str) -> list[str]:
    """Load torchvision's ImageNet weights for ``name`` into ``model`` (strict keys).

    Args:
        model: our model at the ImageNet configuration (e.g. ``resnet50()``), with torchvision's
            parameter names; it is modified in place.
        name: the torchvision architecture whose weights to load, e.g. ``"resnet50"``.

    Returns:
        The 1000 ImageNet category names, ``categories[k]`` for logit ``k``.

    Raises:
        ValueError: unknown ``name``, or the weights do not fit ``model`` (missing or unexpected
            keys, different shapes).
        DownloadError: the weights could not be downloaded (e.g. no internet connection).
    """
    weights = imagenet_weights(name)
    try:
        state_dict = _download_state_dict(weights)
    except Exception as exc:  # urllib, http and hash errors all mean "no weights"
        raise DownloadError(
            f"could not download the ImageNet weights for {name} from {weights.url} ({exc}); "
            "connect to the internet or place the file in torch's hub cache. The book's quick "
            "profile skips this step."
        ) from exc
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"the ImageNet weights of {name} do not fit this model: {exc}. Build the "
                         "model at its ImageNet configuration (num_classes=1000, in_channels=3, "
                         "small_input=False).") from exc
    return list(weights.meta["categories"])


def imagenet_preprocess(name: str) -> Callable:
    """The evaluation transform the weights of ``name`` expect (resize, centre crop, normalise).

    Args:
        name: a torchvision model name, e.g. ``"resnet50"``.

    Returns:
        A callable mapping a PIL image or a ``(C, H, W)`` / ``(B, C, H, W)`` tensor to a normalised
        float tensor (``(3, 224, 224)`` for ResNets).
    """
    return imagenet_weights(name).transforms()
