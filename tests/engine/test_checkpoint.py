"""Tests of companion.engine.checkpoint and resuming fit."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from companion.data.loaders import ArrayDataset, make_loader
from companion.engine import (CheckpointError, History, TrainConfig, fit, load_checkpoint,
                              restore_checkpoint, save_checkpoint)


def blobs(n: int = 24, classes: int = 3) -> ArrayDataset:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % classes  # (n,)
    images = torch.randn(classes, 1, 4, 4, generator=generator)[labels]  # (n, 1, 4, 4)
    return ArrayDataset(images + 0.5 * torch.randn(n, 1, 4, 4, generator=generator), labels)


def mlp(classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(16, classes))


def train(path: Path, epochs: int, *, resume: bool = False, seed: int = 0,
          classes: int = 3, optimizer_class=torch.optim.SGD) -> tuple[nn.Module, History]:
    """A run with dropout, momentum, shuffling and a scheduler: everything resuming must restore."""
    torch.manual_seed(seed)
    model = mlp(classes)
    if optimizer_class is torch.optim.SGD:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        optimizer = optimizer_class(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    data = blobs()
    history = fit(model, optimizer, make_loader(data, 5, shuffle=True, seed=3), make_loader(data, 8),
                  scheduler=scheduler,
                  config=TrainConfig(epochs=epochs, device="cpu", progress=False,
                                     checkpoint_path=path, resume=resume))
    return model, history


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    """The bytes of a real checkpoint after one epoch."""
    path = tmp_path_factory.mktemp("run") / "run.pt"
    train(path, epochs=1)
    return path.read_bytes()


def without_seconds(history: History) -> list[dict]:
    return [{key: value for key, value in record.items() if key != "seconds"} for record in history.epochs]


def test_resume_is_bit_identical(tmp_path):
    straight, straight_history = train(tmp_path / "straight.pt", epochs=4)
    train(tmp_path / "resumed.pt", epochs=2)
    resumed, resumed_history = train(tmp_path / "resumed.pt", epochs=4, resume=True, seed=123)
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert without_seconds(resumed_history) == without_seconds(straight_history)
    assert resumed_history["epoch"] == [1, 2, 3, 4]
    assert load_checkpoint(tmp_path / "resumed.pt")["epoch"] == 4


def test_resume_of_a_finished_run_trains_nothing(tmp_path):
    model, history = train(tmp_path / "run.pt", epochs=2)
    again, again_history = train(tmp_path / "run.pt", epochs=2, resume=True, seed=5)
    assert again_history == history
    for name, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[name])


def test_resume_without_a_file_starts_fresh(tmp_path):
    _, history = train(tmp_path / "new" / "run.pt", epochs=1, resume=True)
    assert len(history) == 1 and (tmp_path / "new" / "run.pt").is_file()


def test_checkpoint_contents_load_with_weights_only(checkpoint_bytes, tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(checkpoint_bytes)
    checkpoint = load_checkpoint(path)
    assert checkpoint["format"] == "companion.engine.checkpoint" and checkpoint["version"] == 1
    assert checkpoint["epoch"] == 1
    assert set(checkpoint["model"]) == set(mlp().state_dict())
    assert isinstance(checkpoint["rng"][0]["torch"], torch.Tensor)
    assert History.from_dict(checkpoint["history"])["epoch"] == [1]


def test_existing_checkpoint_without_resume_is_kept(checkpoint_bytes, tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(checkpoint_bytes)
    with pytest.raises(CheckpointError, match=r"run.pt exists; pass resume=True to continue it or "
                                              r"choose another path"):
        train(path, epochs=2)
    assert path.read_bytes() == checkpoint_bytes


def expect_error(path: Path, match: str, *, readable: bool = False, **train_options) -> None:
    """fit(resume=True) (and load_checkpoint unless ``readable``) raise; the file stays byte-identical."""
    before = path.read_bytes()
    if not readable:
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(path)
    with pytest.raises(CheckpointError, match=match) as error:
        train(path, epochs=2, resume=True, **train_options)
    assert str(path) in str(error.value)
    assert path.read_bytes() == before
    assert [entry.name for entry in path.parent.iterdir()] == [path.name]  # no temporary files left


def test_truncated_checkpoint(checkpoint_bytes, tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(checkpoint_bytes[: len(checkpoint_bytes) // 2])
    expect_error(path, r"truncated or corrupt.*Move it aside and train from scratch")


def test_empty_checkpoint(tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(b"")
    expect_error(path, r"is empty \(0 bytes\)")


def test_bare_state_dict_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(mlp().state_dict(), path)
    expect_error(path, r"not a companion checkpoint: it looks like a bare state_dict.*"
                       r"model.load_state_dict")


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(torch.randint(0, 256, (1000,), generator=torch.Generator().manual_seed(0),
                                   dtype=torch.uint8).numpy().tobytes())
    expect_error(path, r"not a companion checkpoint: it is not a file written by torch.save")


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"format": "companion.engine.checkpoint", "model": mlp()}, path)  # a whole nn.Module
    expect_error(path, r"not a companion checkpoint: it holds Python objects")


def test_checkpoint_of_another_model(checkpoint_bytes, tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(checkpoint_bytes)
    expect_error(path, r"different model.*4\.weight: checkpoint \(3, 16\) vs model "
                                         r"\(10, 16\).*same arguments", readable=True, classes=10)


def test_checkpoint_of_another_optimizer(checkpoint_bytes, tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(checkpoint_bytes)
    expect_error(path, r"different optimizer.*Adam", readable=True, optimizer_class=torch.optim.Adam)


def test_restore_checks_before_loading(checkpoint_bytes, tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(checkpoint_bytes)
    model = mlp(classes=10)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(CheckpointError, match="different model"):
        restore_checkpoint(load_checkpoint(path), model=model, path=path)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])


def test_save_is_atomic(checkpoint_bytes, tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    path.write_bytes(checkpoint_bytes)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model=mlp(), epoch=3)
    assert path.read_bytes() == checkpoint_bytes
    assert os.listdir(tmp_path) == ["run.pt"]


def test_wrapped_models_save_plain_names(tmp_path):
    model = mlp()
    save_checkpoint(tmp_path / "run.pt", model=nn.DataParallel(model), epoch=0)
    checkpoint = load_checkpoint(tmp_path / "run.pt")
    assert set(checkpoint["model"]) == set(model.state_dict())
    epoch, history = restore_checkpoint(checkpoint, model=mlp())
    assert epoch == 0 and len(history) == 0
