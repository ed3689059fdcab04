"""Data-parallel training with fit: two CPU processes (gloo) launched by torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from companion.distributed import init_distributed, is_main_process, world_size
from companion.engine import load_checkpoint

REPOSITORY = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")


def test_single_process_fallback(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    rank, size, device = init_distributed()
    assert (rank, size) == (0, 1) and isinstance(device, torch.device)
    assert is_main_process() and world_size() == 1
    assert not torch.distributed.is_initialized()


@pytest.mark.slow
def test_two_processes_end_with_identical_weights(tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY),
                                                              os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(WORKER), str(tmp_path)]
    result = subprocess.run(command, env=environment, cwd=REPOSITORY, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    weights = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name
    histories = [json.loads((tmp_path / f"history{rank}.json").read_text()) for rank in (0, 1)]
    assert histories[0] == histories[1]  # metrics all-reduced: every rank records the same
    losses = [record["train_loss"] for record in histories[0]["epochs"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")  # written by rank 0
    assert checkpoint["epoch"] == 3 and len(checkpoint["rng"]) == 2
    for name, value in weights[0].items():
        assert torch.equal(value, checkpoint["model"][name])  # no "module." prefix
