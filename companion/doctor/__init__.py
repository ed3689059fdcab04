"""``python -m companion.doctor``: what this machine can run, in one report.

It collects versions, the device, the run profile, which datasets are available offline, and a
smoke test of every registered model: a forward and backward pass (on a GPU under autocast and
in channels_last memory format). The report is a list of ``(section, key, value)`` rows;
``__main__`` prints it.
"""

from __future__ import annotations

import importlib.metadata
import platform

import torch

from companion import profiles
from companion.data import registry as data_registry
from companion.models import list_models, model_entry
from companion.utils.amp import autocast, autocast_dtype, grad_scaler

Row = tuple[str, str, str]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment_rows() -> list[Row]:
    rows: list[Row] = [("versions", "python", platform.python_version())]
    for package in ("torch", "torchvision", "numpy", "matplotlib", "dl-course-companion", "jupyter-book", "d2l"):
        rows.append(("versions", package, _version(package)))
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            rows.append(("device", f"cuda:{index}", f"{props.name}, {props.total_memory / 2**30:.1f} GiB, "
                                                   f"compute capability {props.major}.{props.minor}"))
        rows.append(("device", "cuda runtime", str(torch.version.cuda)))
    else:
        rows.append(("device", "cuda", "not available (CPU only)"))
    rows.append(("device", "cpu threads", str(torch.get_num_threads())))
    try:
        chosen = profiles.profile()
        rows.append(("profile", chosen.name, str(chosen)))
    except ValueError as exc:
        rows.append(("profile", "error", str(exc)))
    for name in data_registry.list_datasets():
        found = data_registry.find_offline(name)
        rows.append(("datasets", name, found if found else "not found offline (will be downloaded on first use)"))
    from companion.segmentation import datasets as segmentation_datasets  # the real Part 4 datasets

    for name in segmentation_datasets.REAL_DATASETS:
        found = segmentation_datasets.find_offline(name)
        rows.append(("datasets", name, str(found) if found else "not found offline (download=True fetches it)"))
    return rows


def smoke_test_model(name: str, device: torch.device, batch_size: int = 2) -> str:
    """Forward and backward of one registered model; returns a one-line result."""
    entry = model_entry(name)
    model = entry.build().to(device)
    inputs = torch.randn(batch_size, *entry.input_shape, device=device)
    use_amp = device.type == "cuda"
    if use_amp and inputs.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    scaler = grad_scaler(device, enabled=use_amp)
    with autocast(device, enabled=use_amp):
        outputs = model(inputs)
        loss = outputs.float().logsumexp(dim=1).mean()
    scaler.scale(loss).backward()
    if not torch.isfinite(outputs.float()).all():
        raise FloatingPointError(f"{name} produced non-finite outputs")
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    if missing:
        raise RuntimeError(f"{name}: no gradient reached {missing[:3]}")
    mode = f"autocast {autocast_dtype(device)}, channels_last" if use_amp else "float32"
    return f"ok: output {tuple(outputs.shape)}, {mode}"


def model_rows(device: torch.device | None = None) -> list[Row]:
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows: list[Row] = []
    for name in list_models():
        try:
            rows.append(("models", name, smoke_test_model(name, device)))
        except Exception as exc:  # the doctor reports every failure instead of stopping at the first
            rows.append(("models", name, f"FAILED: {type(exc).__name__}: {exc}"))
    return rows


def report() -> list[Row]:
    """Every row of the doctor's report."""
    return environment_rows() + model_rows()
