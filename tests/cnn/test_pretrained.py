"""Pretrained ImageNet weights, tested offline: the strict-load path and the download-failure path."""

import urllib.error

import pytest
import torch
import torchvision
from torchvision.models._api import WeightsEnum

from companion.cnn.pretrained import imagenet_preprocess, imagenet_weights, load_imagenet_weights
from companion.cnn.resnet import resnet18, resnet_mini
from companion.data.download import DownloadError


def _offline(self, *args, **kwargs):
    raise urllib.error.URLError("[Errno -2] Name or service not known")


def test_download_failure_raises_a_clear_download_error(monkeypatch):
    monkeypatch.setattr(WeightsEnum, "get_state_dict", _offline)
    with pytest.raises(DownloadError, match="could not download the ImageNet weights for resnet18"):
        load_imagenet_weights(resnet18(), "resnet18")
    with pytest.raises(DownloadError, match="quick profile skips"):
        load_imagenet_weights(resnet18(), "resnet18")


def test_strict_load_returns_the_categories(monkeypatch):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    seen = {}

    def fake_get_state_dict(self, *args, **kwargs):
        seen["url"] = self.url
        return reference.state_dict()

    monkeypatch.setattr(WeightsEnum, "get_state_dict", fake_get_state_dict)
    model = resnet18().eval()
    categories = load_imagenet_weights(model, "resnet18")
    assert seen["url"].endswith(".pth")
    assert len(categories) == 1000 and categories[0] == "tench"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)


def test_weights_that_do_not_fit_are_a_value_error(monkeypatch):
    monkeypatch.setattr(WeightsEnum, "get_state_dict",
                        lambda self, *a, **k: torchvision.models.resnet18(weights=None).state_dict())
    with pytest.raises(ValueError, match="ImageNet configuration"):
        load_imagenet_weights(resnet_mini(), "resnet18")


def test_unknown_architecture():
    with pytest.raises(ValueError, match="no pretrained weights for 'resnet19'"):
        imagenet_weights("resnet19")


def test_preprocess_gives_normalised_224_crops():
    transform = imagenet_preprocess("resnet50")
    image = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8)
    out = transform(image)
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
