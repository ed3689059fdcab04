import torch

from companion.utils import amp


def test_cpu_autocasts_to_bfloat16():
    layer = torch.nn.Linear(4, 3)
    with amp.autocast("cpu"):
        out = layer(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16


def test_disabled_autocast_changes_nothing():
    layer = torch.nn.Linear(4, 3)
    with amp.autocast("cpu", enabled=False):
        out = layer(torch.randn(2, 4))
    assert out.dtype == torch.float32


def test_cuda_dtype_follows_bf16_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert amp.autocast_dtype("cuda") == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert amp.autocast_dtype("cuda") == torch.bfloat16
    assert amp.autocast_dtype("cpu") == torch.bfloat16


def test_scaler_only_for_cuda_float16():
    assert not amp.grad_scaler("cpu").is_enabled()
    assert not amp.grad_scaler("cuda", dtype=torch.bfloat16).is_enabled()
    assert not amp.grad_scaler("cuda", enabled=False, dtype=torch.float16).is_enabled()
    # Constructing an enabled CUDA scaler on a CPU-only machine warns and disables itself,
    # so the active case is checked on a GPU below.


import pytest  # noqa: E402


@pytest.mark.gpu
def test_scaler_active_for_cuda_float16():
    assert amp.grad_scaler("cuda", dtype=torch.float16).is_enabled()
