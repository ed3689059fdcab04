"""Every registered model: finite outputs, gradients everywhere, channels_last agrees."""

import pytest
import torch

from companion.models import build_model, list_models, model_entry


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name):
    entry = model_entry(name)
    model = build_model(name)
    inputs = torch.randn(2, *entry.input_shape)
    outputs = model(inputs)
    assert torch.isfinite(outputs).all()
    outputs.logsumexp(dim=1).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


@pytest.mark.parametrize("name", list_models())
def test_channels_last_matches_contiguous(name):
    entry = model_entry(name)
    model = build_model(name).eval()
    inputs = torch.randn(2, *entry.input_shape)
    if inputs.dim() != 4:
        pytest.skip("channels_last applies to 4-D (image) inputs only")
    with torch.no_grad():
        reference = model(inputs)
        fast = model.to(memory_format=torch.channels_last)(inputs.contiguous(memory_format=torch.channels_last))
    # Deep untrained networks in eval mode reach logits of 1e5 and more (running statistics are still
    # mean 0, variance 1), so the float32 rounding error is judged relative to the output's scale.
    scale = reference.abs().max().clamp_min(1.0)
    torch.testing.assert_close(fast / scale, reference / scale, rtol=1e-5, atol=1e-5)


def test_unknown_model_lists_registered_ones():
    with pytest.raises(ValueError, match="registered models are: .*mlp"):
        build_model("resnet9000")


def test_mlp_input_size_mismatch_is_clear():
    model = build_model("mlp")
    with pytest.raises(ValueError, match="in_features=1024"):
        model(torch.randn(2, 1, 32, 32))


def test_doctor_runs():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "companion.doctor"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "[datasets]" in result.stdout and "mlp" in result.stdout
    assert "all model smoke tests passed" in result.stdout


@pytest.mark.parametrize("name", list_models())
def test_registered_model_names_its_chapter(name):
    from pathlib import Path

    chapter = model_entry(name).chapter
    assert chapter and (Path(__file__).resolve().parents[1] / chapter).exists(), chapter
