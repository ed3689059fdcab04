"""Run profiles: the sizes a notebook uses, chosen once per run.

``quick`` is what CI and the rendered book run: CPU, offline data, about a minute per notebook on a
2-core machine. ``full`` is what a reader with a GPU runs: real datasets at paper scale. The same
notebook reads its sizes from :func:`profile`, so nothing is hard-coded twice.

Taught in: book/00_preface/index.md (section "Quick and full profiles").
"""

from __future__ import annotations

import dataclasses
import os
from typing import TypeVar

T = TypeVar("T")

ENV_VAR = "COMPANION_PROFILE"


@dataclasses.dataclass(frozen=True)
class Profile:
    """The sizes one run of a notebook uses.

    Notebook-specific sizes that differ between profiles are written once, in the notebook, with
    :meth:`pick` (``p.pick(quick=3, full=30)``).
    """

    name: str  # "quick" or "full"
    device: str  # "cpu" for quick (reproducible outputs); the best device available for full
    train_size: int | None  # training examples used; None means the whole training split
    test_size: int | None  # test examples used; None means the whole test split
    epochs: int  # default number of passes over the training subset
    batch_size: int  # default mini-batch size
    image_size: int  # input side for ImageNet-style architectures (native 28x28 data is resized)
    num_workers: int  # DataLoader worker processes (0: load in the main process)

    def pick(self, *, quick: T, full: T) -> T:
        """Return ``quick`` in the quick profile and ``full`` in the full profile."""
        return quick if self.name == "quick" else full


def _quick() -> Profile:
    return Profile(
        name="quick", device="cpu", train_size=None, test_size=None,
        epochs=5, batch_size=256, image_size=32, num_workers=0,
    )


def _full() -> Profile:
    from companion.utils.device import get_device  # imports torch; only when asked

    return Profile(
        name="full", device=str(get_device()), train_size=None, test_size=None,
        epochs=30, batch_size=256, image_size=224, num_workers=4,
    )


PROFILES = {"quick": _quick, "full": _full}


def profile(name: str | None = None) -> Profile:
    """Return the run profile.

    The name is, in order: the argument, the ``COMPANION_PROFILE`` environment variable, then
    ``full`` when CUDA is available and ``quick`` otherwise.

    Args:
        name: ``"quick"``, ``"full"`` or None to choose as above.

    Returns:
        The :class:`Profile` with that name's sizes.

    Raises:
        ValueError: the name (from the argument or the environment) is not a known profile.
    """
    source = "argument"
    if name is None:
        name = os.environ.get(ENV_VAR) or None
        source = f"environment variable {ENV_VAR}"
    if name is None:
        import torch

        name = "full" if torch.cuda.is_available() else "quick"
    key = name.strip().lower()
    if key not in PROFILES:
        valid = ", ".join(sorted(PROFILES))
        raise ValueError(
            f"unknown run profile {name!r} (from the {source}); valid profiles are: {valid}. "
            f"Pass one of them, or unset {ENV_VAR} to choose automatically."
        )
    return PROFILES[key]()
