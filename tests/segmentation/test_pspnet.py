"""PSPNet: the dilated backbone equals torchvision's, pyramid pooling shapes, the model's invariants."""

import pytest
import torch
import torch.nn.functional as F
import torchvision

from companion.cnn.resnet import BasicBlock, Bottleneck, ResNet, resnet18
from companion.segmentation.pspnet import (PSPNet, PyramidPoolingModule, ResNetBackbone, dilate_resnet_,
                                           dilated_resnet, pspnet_loss, pspnet_mini)


def test_dilated_resnet_equals_torchvision_replace_stride_with_dilation():
    torch.manual_seed(0)
    for flags in [(False, True, True), (False, False, True), (True, True, True)]:
        # Bottleneck ResNets (torchvision's BasicBlock refuses dilation), two blocks per stage
        reference = torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [2, 2, 2, 2],
                                                     replace_stride_with_dilation=list(flags)).eval()
        ours = dilate_resnet_(ResNet(Bottleneck, (2, 2, 2, 2)), flags).eval()
        ours.load_state_dict(reference.state_dict())
        x = torch.randn(1, 3, 35, 41)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)


def test_backbone_strides_and_shapes():
    for output_stride, side in [(8, 12), (16, 6), (32, 3)]:
        backbone = dilated_resnet(BasicBlock, (1, 1, 1, 1), (4, 8, 8, 8), output_stride=output_stride)
        assert backbone.output_stride == output_stride
        features = backbone(torch.randn(2, 3, 96, 96))
        assert features["layer1"].shape == (2, 4, 24, 24)
        assert features["layer4"].shape == (2, 8, side, side)
    with pytest.raises(ValueError, match="output_stride"):
        dilated_resnet(BasicBlock, (1, 1, 1, 1), (4, 8, 8, 8), output_stride=4)
    with pytest.raises(ValueError, match="three booleans"):
        dilate_resnet_(resnet18(), (True, True))


def test_backbone_loads_a_resnet_state_dict():
    resnet = resnet18()
    backbone = ResNetBackbone(dilate_resnet_(resnet18()))
    missing, unexpected = backbone.load_state_dict(resnet.state_dict(), strict=False)
    assert missing == [] and sorted(unexpected) == ["fc.bias", "fc.weight"]


def test_pyramid_pooling_levels_and_output_shapes():
    torch.manual_seed(0)
    module = PyramidPoolingModule(32, bins=(1, 2, 3, 6)).eval()
    x = torch.randn(2, 32, 12, 15)
    pooled = module.pooled(x)
    assert [tuple(level.shape) for level in pooled] == [(2, 8, b, b) for b in (1, 2, 3, 6)]
    out = module(x)
    assert module.out_channels == 64 and out.shape == (2, 64, 12, 15)
    assert torch.equal(out[:, :32], x)  # the input passes through unchanged
    # the 1x1 level is the global average, constant over space
    assert torch.allclose(out[:, 32:40], out[:, 32:40, :1, :1].expand(-1, -1, 12, 15))
    # level 1 reproduced by hand: pool, conv, BN (eval), ReLU
    stage = module.stages[0]
    manual = F.relu(stage[2](stage[1](x.mean(dim=(2, 3), keepdim=True))))
    torch.testing.assert_close(pooled[0], manual)
    with pytest.raises(ValueError, match="bins"):
        PyramidPoolingModule(32, bins=(0, 2))


@pytest.mark.parametrize("height, width", [(37, 53), (96, 96)])
def test_pspnet_mini_output_shape_and_no_nan(height, width):
    torch.manual_seed(0)
    model = pspnet_mini(6).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, height, width))
    assert logits.shape == (2, 6, height, width)
    assert torch.isfinite(logits).all()


def test_pspnet_every_parameter_gets_a_gradient_with_aux_loss():
    torch.manual_seed(0)
    model = pspnet_mini(4, aux_loss=True).train()
    images, target = torch.rand(2, 3, 40, 44), torch.randint(0, 4, (2, 40, 44))
    target[0, :3] = 255  # ignored pixels
    outputs = model(images)
    assert set(outputs) == {"out", "aux"} and outputs["aux"].shape == (2, 4, 40, 44)
    loss = pspnet_loss(outputs, target)
    expected = (F.cross_entropy(outputs["out"], target, ignore_index=255)
                + 0.4 * F.cross_entropy(outputs["aux"], target, ignore_index=255))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_pspnet_with_aux_loss_trains_with_fit_and_evaluates_like_the_plain_model():
    """The chapter's exercise: fit with pspnet_loss, then evaluate_segmentation (eval mode: logits only)."""
    from companion.data import ArrayDataset, make_loader
    from companion.engine import TrainConfig, fit
    from companion.segmentation.metrics import evaluate_segmentation

    torch.manual_seed(0)
    model = pspnet_mini(3, aux_loss=True)
    data = ArrayDataset(torch.rand(8, 3, 32, 36), torch.randint(0, 3, (8, 32, 36)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    history = fit(model, optimizer, make_loader(data, 4), loss_fn=pspnet_loss,
                  config=TrainConfig(epochs=1, device="cpu", progress=False))
    assert len(history["train_loss"]) == 1 and history["train_loss"][0] > 0
    model.eval()
    images = data.images[:2]
    with torch.no_grad():
        logits = model(images)  # the auxiliary branch is dropped at test time, as in the paper
        assert isinstance(logits, torch.Tensor) and logits.shape == (2, 3, 32, 36)
        features = model.backbone(images)["layer4"]
        expected = F.interpolate(model.classifier(model.ppm(features)), size=(32, 36), mode="bilinear",
                                 align_corners=False)
    torch.testing.assert_close(logits, expected)
    scores = evaluate_segmentation(model, make_loader(data, 4), 3)
    assert 0 <= scores["miou"] <= 1
    assert isinstance(model.train()(images), dict)  # training mode: both outputs again


def test_pspnet_channels_last_equals_contiguous():
    torch.manual_seed(0)
    model = pspnet_mini(6).eval()
    x = torch.rand(2, 3, 45, 61)
    with torch.no_grad():
        reference = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        result = model_cl(x.contiguous(memory_format=torch.channels_last))
    scale = reference.abs().max()
    torch.testing.assert_close(result, reference, rtol=0, atol=1e-5 * float(scale))


def test_pspnet_rejects_bad_input():
    with pytest.raises(ValueError, match="num_classes"):
        PSPNet(dilated_resnet(BasicBlock, (1, 1, 1, 1), (4, 8, 8, 8)), 0)
    with pytest.raises(ValueError, match="in_channels=1"):
        pspnet_mini(3)(torch.rand(2, 1, 32, 32))
