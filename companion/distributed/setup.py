"""Starting and stopping a data-parallel job launched by ``torchrun``.

``torchrun --nproc_per_node N script.py`` starts N copies of the script and tells each one who it is
through environment variables: ``RANK`` (0..N-1 over all machines), ``LOCAL_RANK`` (0..GPUs-1 on
this machine), ``WORLD_SIZE`` (N), and where to meet (``MASTER_ADDR``, ``MASTER_PORT``).
:func:`init_distributed` reads them and joins the process group; ``companion.engine.fit`` then
wraps the model in ``DistributedDataParallel`` by itself.

Taught in: the book's part on distributed training (``companion.distributed``).
"""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist

from companion.utils.device import get_device

logger = logging.getLogger(__name__)


def init_distributed(backend: str | None = None) -> tuple[int, int, torch.device]:
    """Join the process group that ``torchrun`` set up, and pick this process's device.

    Without torchrun's variables (a notebook, ``python script.py``) nothing is initialised and the
    single process is rank 0 of 1, so the same script runs with and without ``torchrun``.

    Args:
        backend: ``"nccl"`` or ``"gloo"``; default NCCL when CUDA is available, else Gloo.

    Returns:
        ``(rank, world_size, device)``: the device is ``cuda:LOCAL_RANK`` (made the current CUDA
        device) when CUDA is available, else the CPU.
    """
    if dist.is_available() and dist.is_initialized():
        rank, size = dist.get_rank(), dist.get_world_size()
        return rank, size, _local_device(int(os.environ.get("LOCAL_RANK", "0")))
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        logger.info("RANK/WORLD_SIZE not set (not launched by torchrun): running as one process")
        return 0, 1, get_device()
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; install a build that has it.")
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _local_device(local_rank)
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda" and backend == "nccl":
        dist.init_process_group(backend=backend, rank=rank, world_size=size, device_id=device)
    else:
        dist.init_process_group(backend=backend, rank=rank, world_size=size)
    logger.info("rank %d of %d on %s (%s)", rank, size, device, backend)
    return rank, size, device


def cleanup() -> None:
    """Leave the process group (a no-op when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True on rank 0, and in a run that is not distributed: the process that logs and saves."""
    return rank() == 0


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """How many processes train together (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _local_device(local_rank: int) -> torch.device:
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")
