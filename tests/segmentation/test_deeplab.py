"""DeepLab: atrous convolution, ASPP equal to torchvision's, the v3 and v3+ models' invariants."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.segmentation import deeplabv3 as tv_deeplabv3

from companion.cnn.resnet import BasicBlock
from companion.segmentation.deeplab import (ASPP, DeepLabHead, DeepLabV3, DeepLabV3Plus, deeplabv3_mini,
                                            deeplabv3plus_mini, mini_rates, paper_rates)
from companion.segmentation.pspnet import MINI_LAYERS, MINI_WIDTHS, dilated_resnet


def _randomize_batch_norms(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Non-trivial running statistics and affine parameters, so eval mode tests more than identity BN."""
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=generator) * 0.1)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=generator) + 0.5)
            bn.weight.data.copy_(torch.rand(bn.num_features, generator=generator) + 0.5)
            bn.bias.data.copy_(torch.randn(bn.num_features, generator=generator) * 0.1)


def test_atrous_convolution_equals_a_zero_stuffed_kernel():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 17, 19, generator=generator)
    weight = torch.randn(4, 3, 3, 3, generator=generator)
    for rate in (1, 2, 3):
        atrous = F.conv2d(x, weight, padding=rate, dilation=rate)
        stuffed = torch.zeros(4, 3, 2 * rate + 1, 2 * rate + 1)
        stuffed[:, :, ::rate, ::rate] = weight  # the holes between the nine taps are zeros
        torch.testing.assert_close(atrous, F.conv2d(x, stuffed, padding=rate), rtol=1e-5, atol=1e-5)


def test_atrous_receptive_field_grows_with_the_rate():
    # the gradient of one output pixel reaches exactly the input pixels it depends on: two stacked
    # 3x3 convolutions with rates r1, r2 span 1 + 2 (r1 + r2) pixels; rates (2, 2) leave holes
    for rate, rates, field, rows_used in [(1, 1, 5, 5), (2, 1, 7, 7), (2, 2, 9, 5)]:
        x = torch.zeros(1, 1, 31, 31, requires_grad=True)
        weight = torch.ones(1, 1, 3, 3)
        y = F.conv2d(F.conv2d(x, weight, padding=rate, dilation=rate), weight, padding=rates, dilation=rates)
        y[0, 0, 15, 15].backward()
        rows = (x.grad[0, 0] != 0).any(dim=1).nonzero().flatten()
        assert int(rows.max() - rows.min()) + 1 == field and rows.numel() == rows_used


def test_aspp_equals_torchvision_with_the_same_state_dict():
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    ours = ASPP(16, (1, 2, 3), out_channels=8)
    reference = tv_deeplabv3.ASPP(16, [1, 2, 3], out_channels=8)
    _randomize_batch_norms(reference, generator)
    assert [name for name, _ in ours.state_dict().items()] == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict())
    ours.eval(), reference.eval()
    x = torch.randn(2, 16, 9, 11, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-6)
    reference.load_state_dict(ours.state_dict())  # and the other way round


def test_deeplab_head_equals_torchvision():
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    ours, reference = DeepLabHead(16, 5, (2, 4)), tv_deeplabv3.DeepLabHead(16, 5, (2, 4))
    _randomize_batch_norms(reference, generator)
    ours.load_state_dict(reference.state_dict())
    ours.eval(), reference.eval()
    x = torch.randn(2, 16, 7, 6, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)


def test_aspp_branches_and_errors():
    aspp = ASPP(8, (6, 12, 18), out_channels=4)
    assert len(aspp.convs) == 5  # 1x1, three atrous, image pooling
    assert [aspp.convs[i][0].dilation for i in (1, 2, 3)] == [(6, 6), (12, 12), (18, 18)]
    assert aspp.project[0].in_channels == 20
    with pytest.raises(ValueError, match="atrous_rates"):
        ASPP(8, (0, 2))


def test_mini_rates_double_when_the_output_stride_halves():
    assert mini_rates(16) == (1, 2, 3) and mini_rates(8) == (2, 4, 6)


@pytest.mark.parametrize("output_stride, rates", [(16, (6, 12, 18)), (8, (12, 24, 36)), (32, (3, 6, 9))])
def test_default_aspp_rates_follow_the_backbones_output_stride(output_stride, rates):
    assert paper_rates(output_stride) == rates
    with torch.device("meta"):
        backbone = dilated_resnet(BasicBlock, MINI_LAYERS, MINI_WIDTHS, output_stride=output_stride)
        v3 = DeepLabV3(backbone, 3)
        v3plus = DeepLabV3Plus(backbone, 3)
        chosen = DeepLabV3Plus(backbone, 3, atrous_rates=(1, 2, 3))
    assert v3.classifier[0].atrous_rates == rates and v3plus.aspp.atrous_rates == rates
    assert chosen.aspp.atrous_rates == (1, 2, 3)


MODELS = [lambda: deeplabv3plus_mini(6, output_stride=16), lambda: deeplabv3plus_mini(6, output_stride=8),
          lambda: deeplabv3_mini(6)]


@pytest.mark.parametrize("build", MODELS)
@pytest.mark.parametrize("height, width", [(37, 53), (96, 96)])
def test_output_shape_for_odd_sizes_and_no_nan(build, height, width):
    torch.manual_seed(0)
    model = build().eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, height, width))
    assert logits.shape == (2, 6, height, width)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("build", MODELS)
def test_every_parameter_gets_a_gradient(build):
    torch.manual_seed(0)
    model = build().train()
    images, target = torch.rand(2, 3, 41, 38), torch.randint(0, 6, (2, 41, 38))
    F.cross_entropy(model(images), target).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("build", MODELS)
def test_channels_last_equals_contiguous(build):
    torch.manual_seed(0)
    model = build().eval()
    x = torch.rand(2, 3, 45, 61)
    with torch.no_grad():
        reference = model(x)
        result = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(result, reference, rtol=0, atol=1e-5 * float(reference.abs().max()))


def test_v3plus_decoder_sees_stride_4_features():
    model = deeplabv3plus_mini(6)
    assert model.backbone.strides[0] == 4 and model.backbone.output_stride == 16
    assert model.decoder.reduce[0].in_channels == model.backbone.channels[0]
    assert isinstance(deeplabv3_mini(6), DeepLabV3) and isinstance(model, DeepLabV3Plus)
    with pytest.raises(ValueError, match="num_classes"):
        deeplabv3plus_mini(0)
