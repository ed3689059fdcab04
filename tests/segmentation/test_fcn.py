"""FCN: bilinear transposed convolutions, the skip variants, any input size."""

import pytest
import torch
import torch.nn.functional as F

from companion.segmentation.fcn import FCN, VARIANTS, bilinear_kernel, bilinear_upsampling, fcn_mini, fcn_vgg16
from seg_model_checks import check_channels_last_equals_contiguous, check_every_parameter_receives_a_gradient


def test_bilinear_kernel_is_a_triangle_on_the_diagonal_channels():
    weight = bilinear_kernel(2, 3, 4)
    assert weight.shape == (2, 3, 4, 4)
    triangle = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(weight[0, 0], triangle[:, None] * triangle[None, :])
    assert torch.equal(weight[1, 1], weight[0, 0])
    assert weight[0, 1].abs().sum() == 0 and weight[:, 2].abs().sum() == 0  # no mixing of channels
    with pytest.raises(ValueError, match="positive"):
        bilinear_kernel(1, 1, 0)


@pytest.mark.parametrize("stride", [2, 4, 8])
def test_bilinear_transposed_convolution_equals_interpolate_in_the_interior(stride):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 7, 10)
    upsampled = bilinear_upsampling(3, stride)(x)  # (2, 3, 7 * stride, 10 * stride)
    reference = F.interpolate(x, scale_factor=stride, mode="bilinear", align_corners=False)
    assert upsampled.shape == reference.shape
    border = stride // 2  # interpolate repeats the edge, the transposed convolution sees zeros
    inner = (..., slice(border, -border), slice(border, -border))
    torch.testing.assert_close(upsampled[inner], reference[inner], atol=1e-6, rtol=0)
    # exactly the outermost stride / 2 rows on each side differ (in the interior columns)
    rows = (upsampled - reference)[..., border:-border].abs().amax(dim=(0, 1, 3)) > 1e-6  # (H,)
    expected = torch.zeros_like(rows)
    expected[:border] = expected[-border:] = True
    assert torch.equal(rows, expected)


@pytest.mark.parametrize(("variant", "size"), [(variant, (37, 53)) for variant in VARIANTS]
                         + [("8s", (96, 96)), ("8s", (1, 1))])
def test_fcn_returns_logits_at_the_input_size(variant, size):
    torch.manual_seed(0)
    model = fcn_mini(6, variant=variant).eval()
    logits = model(torch.rand(2, 3, *size))
    assert logits.shape == (2, 6, *size)
    assert torch.isfinite(logits).all()


def test_every_parameter_receives_a_gradient():
    torch.manual_seed(0)
    check_every_parameter_receives_a_gradient(fcn_mini(4), 4, (40, 45))


@pytest.mark.parametrize("variant", VARIANTS)
def test_final_upsampling_stays_bilinear_as_in_the_paper_unless_learned(variant):
    torch.manual_seed(0)
    model = fcn_mini(4, variant=variant)
    final = getattr(model, {"32s": "upscore32", "16s": "upscore16", "8s": "upscore8"}[variant])
    assert model.final_upsampling is final and not final.weight.requires_grad
    intermediate = [module for name, module in model.named_children()
                    if name.startswith("upscore") and module is not final]
    assert len(intermediate) == {"32s": 0, "16s": 1, "8s": 2}[variant]
    assert all(module.weight.requires_grad for module in intermediate)
    before = final.weight.detach().clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    F.cross_entropy(model(torch.rand(2, 3, 40, 45)), torch.randint(0, 4, (2, 40, 45))).backward()
    optimizer.step()
    torch.testing.assert_close(final.weight, before, rtol=0, atol=0)  # untouched, still the bilinear filter
    torch.testing.assert_close(before, bilinear_kernel(4, 4, final.kernel_size[0]), rtol=0, atol=0)
    learned = fcn_mini(4, variant=variant, learn_final_upsampling=True)
    assert learned.final_upsampling.weight.requires_grad
    check_every_parameter_receives_a_gradient(learned, 4, (40, 45))


def test_channels_last_equals_contiguous():
    torch.manual_seed(0)
    check_channels_last_equals_contiguous(fcn_mini(5).eval(), (50, 61))


def test_skips_start_at_zero_so_8s_begins_as_32s_plus_bilinear_refinements():
    model = fcn_mini(3, variant="8s")
    assert model.score_pool4.weight.abs().sum() == 0 and model.score_pool3.weight.abs().sum() == 0
    assert model.score_fr.weight.abs().sum() > 0


def test_paper_parameter_count():
    # The paper (Table 1) lists 134M parameters for FCN-VGG16; with 21 classes our FCN-32s has that many
    # before its 64x64 transposed convolution (21 * 21 * 64 * 64 = 1.8M weights) is added.
    with torch.device("meta"):
        model = fcn_vgg16(num_classes=21, variant="32s")
    total = sum(p.numel() for p in model.parameters())
    upsampling = model.upscore32.weight.numel()
    assert upsampling == 21 * 21 * 64 * 64
    assert 134.0e6 < total - upsampling < 134.6e6


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="variant"):
        fcn_mini(3, variant="4s")
    with pytest.raises(ValueError, match="five 'M' pools"):
        FCN((8, "M", 16, "M"), num_classes=3)
    with pytest.raises(ValueError, match="must end with its fifth 'M' pool"):
        FCN((8, "M", 8, "M", 8, "M", 8, "M", 8, "M", 16), num_classes=3)  # a layer FC6 would silently replace
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        fcn_mini(3)(torch.rand(1, 1, 32, 32))
