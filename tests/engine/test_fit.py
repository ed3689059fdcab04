"""Tests of companion.engine.fit, evaluate, predict and History."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from companion.data.loaders import ArrayDataset, make_loader
from companion.engine import History, TrainConfig, evaluate, fit, predict
from companion.engine.fit import progress_enabled


def blobs(n: int = 64, classes: int = 3, seed: int = 0) -> ArrayDataset:
    """Linearly separable classes: images (n, 1, 4, 4) whose mean depends on the label."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes  # (n,)
    centers = torch.randn(classes, 1, 4, 4, generator=generator) * 3  # (classes, 1, 4, 4)
    images = centers[labels] + 0.3 * torch.randn(n, 1, 4, 4, generator=generator)  # (n, 1, 4, 4)
    return ArrayDataset(images, labels)


def mlp(classes: int = 3, dropout: float = 0.0) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(16, classes))


def quiet(**overrides) -> TrainConfig:
    return TrainConfig(**{"device": "cpu", "progress": False, **overrides})


def test_training_reduces_loss_and_records_history():
    torch.manual_seed(0)
    data = blobs()
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    history = fit(model, optimizer, make_loader(data, 16, shuffle=True), make_loader(data, 32),
                  config=quiet(epochs=4))
    assert len(history) == 4
    assert history["epoch"] == [1, 2, 3, 4]
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert history.last["val_accuracy"] == 1.0
    assert set(history.last) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                                 "lr", "seconds"}
    assert history["lr"] == [0.1] * 4


def test_regression_has_no_accuracy():
    torch.manual_seed(0)
    inputs = torch.randn(32, 1, 4, 4)
    targets = inputs.flatten(1).sum(dim=1, keepdim=True)  # (32, 1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, targets), batch_size=8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    history = fit(model, torch.optim.SGD(model.parameters(), lr=0.02), loader, loader,
                  config=quiet(epochs=3), loss_fn=F.mse_loss)
    assert "train_accuracy" not in history and "val_accuracy" not in history
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_accumulation_equals_one_large_batch():
    data = blobs(n=8)
    torch.manual_seed(0)
    small = mlp()
    large = copy.deepcopy(small)
    fit(small, torch.optim.SGD(small.parameters(), lr=0.5), make_loader(data, 2),
        config=quiet(epochs=1, accumulation_steps=4))
    fit(large, torch.optim.SGD(large.parameters(), lr=0.5), make_loader(data, 8), config=quiet(epochs=1))
    for name, value in small.state_dict().items():
        torch.testing.assert_close(value, large.state_dict()[name], atol=1e-6, rtol=0)
    assert not torch.equal(small[1].weight, mlp()[1].weight)  # it did train


def test_trailing_partial_group_steps():
    torch.manual_seed(0)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = []
    optimizer.register_step_post_hook(lambda *args: steps.append(1))
    fit(model, optimizer, make_loader(blobs(n=10), 2), config=quiet(epochs=2, accumulation_steps=2))
    assert len(steps) == 2 * 3  # 5 micro-batches per epoch: groups of 2, 2 and 1


def test_grad_clip_caps_the_norm():
    def norms_seen(grad_clip):
        torch.manual_seed(0)
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        norms = []
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: norms.append(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()])).item()))
        fit(model, optimizer, make_loader(blobs(), 16), config=quiet(epochs=1, grad_clip=grad_clip))
        return norms

    assert max(norms_seen(None)) > 0.05
    assert max(norms_seen(0.05)) <= 0.05 * (1 + 1e-5)


def test_amp_on_cpu_autocasts_to_bfloat16():
    torch.manual_seed(0)
    model = mlp()
    dtypes = set()
    model[1].register_forward_hook(lambda module, inputs, output: dtypes.add(output.dtype))
    history = fit(model, torch.optim.SGD(model.parameters(), lr=0.1), make_loader(blobs(), 16),
                  config=quiet(epochs=2, amp=True))
    assert dtypes == {torch.bfloat16}
    assert model[1].weight.dtype == torch.float32  # the weights stay float32
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_channels_last_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    formats = []
    model[0].register_forward_pre_hook(
        lambda module, inputs: formats.append(inputs[0].is_contiguous(memory_format=torch.channels_last)))
    fit(model, torch.optim.SGD(model.parameters(), lr=0.01), make_loader(blobs(n=16), 8),
        config=quiet(epochs=1, channels_last=True))
    assert formats and all(formats)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_scheduler_intervals():
    def lrs(interval):
        torch.manual_seed(0)
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        history = fit(model, optimizer, make_loader(blobs(n=12), 4), scheduler=scheduler,
                      config=quiet(epochs=2, scheduler_interval=interval))
        return history["lr"], optimizer.param_groups[0]["lr"]

    assert lrs("epoch") == ([1.0, 0.5], 0.25)
    assert lrs("step") == ([1.0, 0.125], 0.5**6)  # 3 steps per epoch


def test_set_epoch_is_called_before_each_epoch():
    loader = make_loader(blobs(n=8), 4, shuffle=True)
    seen = []
    original = loader.sampler.set_epoch
    loader.sampler.set_epoch = lambda epoch: (seen.append(epoch), original(epoch))
    model = mlp()
    fit(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, config=quiet(epochs=3))
    assert seen == [0, 1, 2]


def test_too_few_classes_names_the_fix():
    data = ArrayDataset(torch.randn(8, 1, 4, 4), torch.arange(8) % 10 + 2)  # labels up to 9
    model = mlp(classes=5)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"outputs 5 classes but the labels go up to 9: build the "
                                         r"model with num_classes=10"):
        fit(model, torch.optim.SGD(model.parameters(), lr=0.1), make_loader(data, 8), config=quiet())
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])  # no step was taken


def test_shape_errors_name_both_shapes():
    data = blobs(n=8)
    unflattened = nn.Conv2d(1, 3, 3, padding=1)  # (B, 3, 4, 4) logits for (B,) labels
    with pytest.raises(ValueError, match=r"outputs shape \(8, 3, 4, 4\) but the labels have shape "
                                         r"\(8,\).*nn.Flatten"):
        fit(unflattened, torch.optim.SGD(unflattened.parameters(), lr=0.1), make_loader(data, 8),
            config=quiet())

    class MixesBatch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(32, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x.reshape(-1, 32))  # (B, 1, 4, 4) -> (B/2, 32): wrong

    mixed = MixesBatch()
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(8,\): 4 outputs for 8 labels"):
        fit(mixed, torch.optim.SGD(mixed.parameters(), lr=0.1), make_loader(data, 8), config=quiet())


def test_bad_config_values():
    with pytest.raises(ValueError, match="accumulation_steps"):
        TrainConfig(accumulation_steps=0)
    with pytest.raises(ValueError, match="scheduler_interval"):
        TrainConfig(scheduler_interval="batch")
    with pytest.raises(ValueError, match="checkpoint_path"):
        TrainConfig(resume=True)


def test_evaluate_equals_manual_computation():
    torch.manual_seed(0)
    data = blobs(n=10)
    model = mlp(dropout=0.5)
    model.train()
    metrics = evaluate(model, make_loader(data, 3))  # batches of 3, 3, 3, 1
    assert model.training  # the mode is restored
    model.eval()
    with torch.no_grad():
        logits = model(data.images)  # (10, 3)
    assert metrics["loss"] == pytest.approx(F.cross_entropy(logits, data.labels).item(), rel=1e-6)
    assert metrics["accuracy"] == pytest.approx((logits.argmax(1) == data.labels).float().mean().item())


def test_evaluate_with_amp_is_close():
    torch.manual_seed(0)
    data, model = blobs(n=16), mlp()
    full, reduced = evaluate(model, make_loader(data, 8)), evaluate(model, make_loader(data, 8), amp=True)
    assert reduced["loss"] == pytest.approx(full["loss"], rel=0.05)


def test_predict_keeps_loader_order():
    torch.manual_seed(0)
    data = blobs(n=10)
    model = mlp()
    logits, targets = predict(model, make_loader(data, 4))
    assert logits.shape == (10, 3) and logits.device.type == "cpu"
    assert torch.equal(targets, data.labels)
    with torch.no_grad():
        torch.testing.assert_close(logits, model.eval()(data.images))


def test_history_round_trip(tmp_path):
    history = History()
    history.append({"epoch": 1, "train_loss": 1.5, "val_accuracy": 0.5, "lr": 0.1, "seconds": 0.2})
    history.append({"epoch": 2, "train_loss": torch.tensor(0.75), "val_accuracy": 0.75, "lr": 0.1,
                    "seconds": 0.2})
    state = history.to_dict()
    torch.save(state, tmp_path / "history.pt")
    loaded = History.from_dict(torch.load(tmp_path / "history.pt", weights_only=True))
    assert loaded == History.from_dict(state)
    assert loaded["train_loss"] == [1.5, 0.75] and type(loaded["train_loss"][1]) is float
    assert loaded["val_accuracy"] == [0.5, 0.75]
    assert loaded.last["epoch"] == 2 and loaded.best("val_accuracy", mode="max")["epoch"] == 2
    with pytest.raises(KeyError, match="val_loss"):
        loaded["val_loss"]


def test_progress_auto(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("COMPANION_PROGRESS", "0")
    assert not progress_enabled(None)
    assert progress_enabled(True)
    monkeypatch.setenv("COMPANION_PROGRESS", "1")
    assert progress_enabled(None)
    monkeypatch.delenv("COMPANION_PROGRESS")
    monkeypatch.setenv("CI", "true")
    assert not progress_enabled(None)


def test_fit_does_not_print(capsys):
    torch.manual_seed(0)
    model = mlp()
    fit(model, torch.optim.SGD(model.parameters(), lr=0.1), make_loader(blobs(n=8), 4),
        config=TrainConfig(epochs=1, device="cpu", progress=None))
    captured = capsys.readouterr()
    assert captured.out == ""


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_amp(monkeypatch, tmp_path, dtype):
    import companion.utils.amp

    monkeypatch.setattr(companion.utils.amp, "autocast_dtype", lambda device: dtype)
    torch.manual_seed(0)
    model = mlp()
    dtypes = set()
    model[1].register_forward_hook(lambda module, inputs, output: dtypes.add(output.dtype))
    history = fit(model, torch.optim.SGD(model.parameters(), lr=0.1), make_loader(blobs(), 16),
                  config=TrainConfig(epochs=3, device="cuda", amp=True, progress=False, grad_clip=1.0,
                                     checkpoint_path=tmp_path / "run.pt"))
    assert dtypes == {dtype}
    assert next(model.parameters()).device.type == "cuda"
    assert history["train_loss"][-1] < history["train_loss"][0]
    checkpoint = torch.load(tmp_path / "run.pt", weights_only=True)
    assert (checkpoint["scaler"] is not None) == (dtype == torch.float16)  # scaler only for fp16
    assert evaluate(model, make_loader(blobs(), 16), amp=True)["accuracy"] > 0.9


def test_labels_equal_to_the_losses_ignore_index_are_not_classes():
    """Segmentation masks mark void pixels 255: fine with CrossEntropyLoss(ignore_index=255), an error otherwise."""
    torch.manual_seed(0)
    model = nn.Conv2d(1, 3, 1)  # (B, 1, 4, 4) -> (B, 3, 4, 4)
    masks = torch.randint(0, 3, (8, 4, 4))
    masks[:, 0] = 255  # the first row of every mask is void
    data = ArrayDataset(torch.randn(8, 1, 4, 4), masks)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"labels go up to 255.*nn.CrossEntropyLoss\(ignore_index=255\)"):
        fit(model, optimizer, make_loader(data, 8), config=quiet())
    skip_void = nn.CrossEntropyLoss(ignore_index=255)
    with torch.no_grad():  # the loss over the non-void pixels, before the one step
        logits = model(data.images).permute(0, 2, 3, 1)[:, 1:]  # (8, 3, 4, 3): rows 1..3, classes last
        expected = F.cross_entropy(logits.reshape(-1, 3), masks[:, 1:].reshape(-1)).item()
    history = fit(model, optimizer, make_loader(data, 8), config=quiet(epochs=1), loss_fn=skip_void)
    assert history["train_loss"] == [pytest.approx(expected, rel=1e-6)]
    # Any other label above the classes is still caught, and so is a negative one.
    masks[0, 1, 1] = 7
    with pytest.raises(ValueError, match="labels go up to 7: build the model with num_classes=8"):
        fit(model, optimizer, make_loader(ArrayDataset(data.images, masks), 8), config=quiet(), loss_fn=skip_void)
    masks[0, 1, 1] = -100  # -100 is no longer the ignored value
    with pytest.raises(ValueError, match=r"contain -100.*or 255 for positions to ignore"):
        fit(model, optimizer, make_loader(ArrayDataset(data.images, masks), 8), config=quiet(), loss_fn=skip_void)
