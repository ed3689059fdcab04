"""MobileNet v1/v2 and depthwise separable convolution: equality with PyTorch and torchvision,
the papers' parameter and multiply-add counts, small-input shapes, gradients, errors."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from companion.cnn.depthwise import (DepthwiseSeparableConv2d, compose_separable,
                                     depthwise_conv2d, depthwise_separable_cost, nearest_separable,
                                     pointwise_conv2d, separable_cost_ratio, standard_conv_cost)
from companion.cnn.mobilenet import (InvertedResidual, MobileNetV2, make_divisible, mobilenet_mini,
                                     mobilenet_v1, mobilenet_v2)


def _count(model):
    return sum(p.numel() for p in model.parameters())


def _mult_adds(model, side, in_channels=3):
    """Multiply-adds of one image, counted on the meta device (no real arithmetic)."""
    model = model.to("meta")
    x = torch.empty(1, in_channels, side, side, device="meta")
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2  # the counter reports 2 FLOPs per multiply-add


@pytest.fixture(scope="module")
def v2_pair():
    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v2(weights=None).eval()
    ours = mobilenet_v2().eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours, reference


# ------------------------------------------------------------------------ depthwise separable


@pytest.mark.parametrize("stride, padding, kernel", [(1, 1, 3), (2, 1, 3), (1, 0, 3), (2, 2, 5)])
def test_depthwise_conv2d_equals_grouped_conv(stride, padding, kernel):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 11, 9, generator=generator)
    weight = torch.randn(6, 1, kernel, kernel, generator=generator)
    bias = torch.randn(6, generator=generator)
    expected = F.conv2d(x, weight, bias, stride=stride, padding=padding, groups=6)
    actual = depthwise_conv2d(x, weight, bias, stride=stride, padding=padding)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_pointwise_conv2d_equals_1x1_conv():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 5, 7, generator=generator)
    weight = torch.randn(4, 6, 1, 1, generator=generator)
    bias = torch.randn(4, generator=generator)
    torch.testing.assert_close(pointwise_conv2d(x, weight, bias), F.conv2d(x, weight, bias),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_separable_equals_the_composed_standard_conv(stride):
    torch.manual_seed(0)
    layer = DepthwiseSeparableConv2d(5, 7, 3, stride=stride, padding=1)
    x = torch.randn(2, 5, 10, 10)
    weight = compose_separable(layer.depthwise.weight, layer.pointwise.weight)  # (7, 5, 3, 3)
    torch.testing.assert_close(layer(x), F.conv2d(x, weight, stride=stride, padding=1),
                               rtol=1e-5, atol=1e-5)
    # every input channel's (N, K*K) slice has rank one
    slices = weight.permute(1, 0, 2, 3).reshape(5, 7, 9)
    assert (torch.linalg.matrix_rank(slices) == 1).all()


def test_nearest_separable_is_exact_on_separable_kernels_and_not_on_general_ones():
    torch.manual_seed(0)
    layer = DepthwiseSeparableConv2d(4, 6, 3)
    separable = compose_separable(layer.depthwise.weight, layer.pointwise.weight)
    depthwise, pointwise = nearest_separable(separable)
    torch.testing.assert_close(compose_separable(depthwise, pointwise), separable,
                               rtol=1e-4, atol=1e-5)
    general = torch.randn(6, 4, 3, 3)
    depthwise, pointwise = nearest_separable(general)
    error = (compose_separable(depthwise, pointwise) - general).norm() / general.norm()
    assert 0.3 < error < 1.0
    # no other rank-one choice does better: a random perturbation increases the error
    perturbed = compose_separable(depthwise + 0.01 * torch.randn_like(depthwise), pointwise)
    assert (perturbed - general).norm() >= (compose_separable(depthwise, pointwise) - general).norm()


@pytest.mark.parametrize("m, n, k, side", [(32, 64, 3, 112), (512, 512, 3, 14), (16, 8, 5, 7)])
def test_costs_match_modules_and_flop_counter(m, n, k, side):
    standard = nn.Conv2d(m, n, k, padding=k // 2, bias=False)
    separable = DepthwiseSeparableConv2d(m, n, k, padding=k // 2)
    assert standard_conv_cost(m, n, k, side).parameters == _count(standard)
    assert depthwise_separable_cost(m, n, k, side).parameters == _count(separable)
    assert standard_conv_cost(m, n, k, side).mult_adds == _mult_adds(standard, side, m)
    assert depthwise_separable_cost(m, n, k, side).mult_adds == _mult_adds(separable, side, m)
    ratio = depthwise_separable_cost(m, n, k, side).mult_adds / standard_conv_cost(m, n, k, side).mult_adds
    assert ratio == pytest.approx(separable_cost_ratio(n, k))


def test_depthwise_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"\(C, 1, K, K\)"):
        depthwise_conv2d(torch.randn(1, 3, 8, 8), torch.randn(3, 3, 3, 3))
    with pytest.raises(ValueError, match="expects 3"):
        depthwise_conv2d(torch.randn(1, 4, 8, 8), torch.randn(3, 1, 3, 3))
    with pytest.raises(ValueError, match="unsqueeze"):
        pointwise_conv2d(torch.randn(3, 8, 8), torch.randn(4, 3, 1, 1))
    with pytest.raises(ValueError, match="smaller than"):
        depthwise_conv2d(torch.randn(1, 3, 2, 2), torch.randn(3, 1, 3, 3))
    with pytest.raises(ValueError, match="must agree"):
        compose_separable(torch.randn(3, 1, 3, 3), torch.randn(4, 5, 1, 1))


# ----------------------------------------------------------------------------------------- v1


def test_v1_matches_the_papers_counts():
    # Table 6 of Howard et al. (2017): (alpha, millions of parameters, millions of mult-adds)
    for alpha, parameters, mult_adds in [(1.0, 4.2, 569), (0.75, 2.6, 325), (0.5, 1.3, 149),
                                         (0.25, 0.5, 41)]:
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            model = mobilenet_v1(width_multiplier=alpha)
        assert round(_count(model) / 1e6, 1) == parameters, alpha
        assert round(_mult_adds(model, 224) / 1e6) == mult_adds, alpha
    with torch.device("meta"):
        assert _count(mobilenet_v1()) == 4_231_976
    # Table 7: the resolution multiplier changes the mult-adds only
    for rho, side, mult_adds in [(6 / 7, 192, 418), (4 / 7, 128, 186)]:
        with torch.device("meta"):
            model = mobilenet_v1(resolution_multiplier=rho)
        assert model.input_size == side
        assert round(_mult_adds(model, model.input_size) / 1e6) == mult_adds


def test_v1_layer_shapes_follow_table_1():
    with torch.device("meta"):
        model = mobilenet_v1().eval()
        x = torch.zeros(1, 3, 224, 224)
    sides = []
    for layer in model.features:
        x = layer(x)
        sides.append((x.shape[1], x.shape[2]))
    assert sides[0] == (32, 112) and sides[1] == (64, 112) and sides[-1] == (1024, 7)
    assert len(model.features) == 14  # stem + 13 separable blocks = 27 conv layers, + FC = 28


# ----------------------------------------------------------------------------------------- v2


def test_v2_loads_torchvision_weights_and_gives_equal_logits(v2_pair):
    ours, reference = v2_pair
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)
    assert list(ours.state_dict()) == list(reference.state_dict())


def test_v2_parameter_counts_equal_torchvision(v2_pair):
    ours, reference = v2_pair
    assert _count(ours) == _count(reference) == 3_504_872
    with torch.device("meta"):
        for width in (0.5, 0.75, 1.4):
            assert _count(mobilenet_v2(width_mult=width)) == _count(
                torchvision.models.mobilenet_v2(width_mult=width)), width
        assert round(_mult_adds(mobilenet_v2(), 224) / 1e6) == 301  # the paper rounds to 300M


def test_make_divisible():
    assert [make_divisible(v) for v in (32, 24, 16 * 0.75, 4, 1280, 32 * 0.35)] == [32, 24, 16, 8,
                                                                                     1280, 16]


def test_inverted_residual_is_linear_at_the_end_and_uses_the_shortcut_when_it_can():
    block = InvertedResidual(16, 16, 1, 6)
    assert block.use_residual and isinstance(block.conv[-1], nn.BatchNorm2d)
    assert block.conv[0][0].out_channels == 96  # expansion t = 6
    assert not InvertedResidual(16, 24, 1, 6).use_residual
    assert not InvertedResidual(16, 16, 2, 6).use_residual
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        InvertedResidual(16, 16, 3, 6)


# --------------------------------------------------------------------------- small input, mini


@pytest.mark.parametrize("builder", [mobilenet_v1, mobilenet_v2])
@pytest.mark.parametrize("side", [28, 32])
def test_small_input_shapes(builder, side):
    with torch.device("meta"):  # shapes only; the mini test below runs real arithmetic
        model = builder(num_classes=10, in_channels=1, small_input=True).eval()
        final_maps = model.features(torch.empty(2, 1, side, side))
        assert model(torch.empty(2, 1, side, side)).shape == (2, 10)
    # downsampling by 16 (v1) or 8 (v2) instead of 32
    expected = {28: {mobilenet_v1: 2, mobilenet_v2: 4}, 32: {mobilenet_v1: 2, mobilenet_v2: 4}}
    assert final_maps.shape[-1] == expected[side][builder]


def test_small_input_keeps_the_parameters():
    with torch.device("meta"):
        assert _count(mobilenet_v2(small_input=True)) == 3_504_872


def test_mini_forward_backward_and_channels_last():
    torch.manual_seed(0)
    model = mobilenet_mini()
    logits = model(torch.randn(4, 1, 28, 28))
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    logits.logsumexp(dim=1).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    model.eval()
    x = torch.randn(2, 1, 32, 32)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), expected,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("builder", [mobilenet_v1, mobilenet_v2, mobilenet_mini])
def test_wrong_channel_count_says_how_to_fix(builder):
    with torch.device("meta"):
        model = builder(in_channels=1)
    with pytest.raises(ValueError, match="in_channels=3"):
        model(torch.randn(1, 3, 28, 28, device="meta"))


def test_bad_multipliers_and_settings():
    with pytest.raises(ValueError, match="width_multiplier"):
        mobilenet_v1(width_multiplier=0)
    with pytest.raises(ValueError, match="resolution_multiplier"):
        mobilenet_v1(resolution_multiplier=1.5)
    with pytest.raises(ValueError, match="width_mult must be positive"):
        mobilenet_v2(width_mult=-1)
    with pytest.raises(ValueError, match=r"\(t, c, n, s\)"):
        MobileNetV2(inverted_residual_setting=((6, 24, 2),))
