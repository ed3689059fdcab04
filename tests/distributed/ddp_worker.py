"""Worker for tests/distributed/test_ddp.py, launched by torchrun with two processes.

Usage: ``torchrun --standalone --nproc_per_node 2 tests/distributed/ddp_worker.py OUTPUT_FOLDER``.
Each rank trains the same small model with ``fit`` on its shard of a small dataset and writes its
final weights (``rank{R}.pt``) and History (``history{R}.json``) to OUTPUT_FOLDER.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

from companion.data.loaders import ArrayDataset, make_loader
from companion.distributed import cleanup, init_distributed, is_main_process, world_size
from companion.engine import TrainConfig, fit


def main(output: Path) -> None:
    rank, size, device = init_distributed()
    assert size == world_size() == 2 and is_main_process() == (rank == 0)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)  # the same data on every rank
    labels = torch.arange(64) % 4  # (64,)
    centers = 2 * torch.randn(4, 1, 4, 4, generator=generator)  # (4, 1, 4, 4)
    images = centers[labels] + 0.5 * torch.randn(64, 1, 4, 4, generator=generator)  # (64, 1, 4, 4)
    dataset = ArrayDataset(images, labels)
    torch.manual_seed(rank)  # different initial weights and dropout per rank: DDP must sync them
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    config = TrainConfig(epochs=3, device=device, progress=False, accumulation_steps=2,
                         checkpoint_path=output / "checkpoint.pt")
    history = fit(model, optimizer, make_loader(dataset, 4, shuffle=True, seed=1),
                  make_loader(dataset, 16), config=config)
    torch.save(model.state_dict(), output / f"rank{rank}.pt")
    (output / f"history{rank}.json").write_text(json.dumps(history.to_dict()))
    cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
