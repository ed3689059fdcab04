"""What a training run measured, one dict per epoch.

``History`` holds only plain Python types, so it can be stored inside a checkpoint that is read back
with ``torch.load(..., weights_only=True)`` and compared or plotted without torch.

Taught in: book/01_foundations/02_mlp_fashion_mnist.ipynb (the training loop).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any


@dataclasses.dataclass
class History:
    """Per-epoch metrics of a run.

    Each entry of ``epochs`` is a dict with the keys ``"epoch"`` (1-based), ``"train_loss"``,
    ``"train_accuracy"`` (classification only), ``"val_loss"`` and ``"val_accuracy"`` (with a
    validation loader; accuracy for classification only), ``"lr"`` (learning rate of the first
    parameter group at the start of the epoch) and ``"seconds"`` (wall time of the epoch).

    ``history["val_loss"]`` is the list of that metric over epochs; ``history.last`` the last entry.
    """

    epochs: list[dict[str, float | int]] = dataclasses.field(default_factory=list)

    def append(self, record: dict[str, float | int]) -> None:
        """Add the record of one epoch."""
        self.epochs.append(dict(record))

    def __getitem__(self, key: str) -> list[float | int]:
        """All values of metric ``key``, one per epoch that recorded it."""
        if not isinstance(key, str):
            raise TypeError(f"index a History with a metric name such as 'val_loss', not {key!r}; "
                            "use history.epochs[i] for the i-th epoch.")
        values = [record[key] for record in self.epochs if key in record]
        if self.epochs and not values:
            known = sorted({name for record in self.epochs for name in record})
            raise KeyError(f"no metric {key!r} in this History; it has {known}.")
        return values

    def __len__(self) -> int:
        return len(self.epochs)

    def __contains__(self, key: object) -> bool:
        return any(key in record for record in self.epochs)

    @property
    def last(self) -> dict[str, float | int]:
        """The record of the last epoch (an empty dict before the first epoch)."""
        return dict(self.epochs[-1]) if self.epochs else {}

    def best(self, key: str = "val_loss", mode: str = "min") -> dict[str, float | int]:
        """The record of the epoch with the lowest (``mode="min"``) or highest value of ``key``."""
        candidates = [record for record in self.epochs if key in record and not math.isnan(record[key])]
        if not candidates:
            raise KeyError(f"no epoch recorded {key!r}.")
        choose = min if mode == "min" else max
        return dict(choose(candidates, key=lambda record: record[key]))

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only: ``{"epochs": [{"epoch": 1, "train_loss": 0.5, ...}, ...]}``."""
        return {"epochs": [{str(name): _plain(value) for name, value in record.items()}
                           for record in self.epochs]}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "History":
        """Inverse of :meth:`to_dict`."""
        return cls(epochs=[dict(record) for record in state.get("epochs", [])])


def _plain(value: Any) -> float | int:
    """A Python ``int`` or ``float`` from a number, a NumPy scalar or a one-element tensor."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, int):
        return value
    return float(value)
