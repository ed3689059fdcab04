"""The training engine: one loop (``fit``), evaluation, prediction and checkpoints.

``fit`` is the only place in the companion that handles devices, mixed precision, gradient
accumulation and clipping, schedulers, checkpoints and DistributedDataParallel; the chapters build
models and call it.
"""

from companion.engine.checkpoint import CheckpointError, load_checkpoint, restore_checkpoint, save_checkpoint
from companion.engine.evaluation import evaluate, predict
from companion.engine.fit import TrainConfig, fit, progress_enabled
from companion.engine.history import History

__all__ = ["CheckpointError", "History", "TrainConfig", "evaluate", "fit", "load_checkpoint", "predict",
           "progress_enabled", "restore_checkpoint", "save_checkpoint"]
