"""Data-parallel training across processes: launch with ``torchrun``, train with ``engine.fit``."""

from companion.distributed.setup import cleanup, init_distributed, is_main_process, rank, world_size

__all__ = ["cleanup", "init_distributed", "is_main_process", "rank", "world_size"]
