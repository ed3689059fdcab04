"""U-Net: shapes for any size, the paper's valid-padding geometry, the strided stem."""

import pytest
import torch

from companion.segmentation.unet import UNet, center_crop, unet_mini, unet_paper
from seg_model_checks import check_channels_last_equals_contiguous, check_every_parameter_receives_a_gradient


@pytest.mark.parametrize("size", [(37, 53), (96, 96), (5, 7)])
@pytest.mark.parametrize("stem_stride", [1, 2])
def test_unet_returns_logits_at_the_input_size(size, stem_stride):
    torch.manual_seed(0)
    model = UNet(num_classes=6, base_channels=4, depth=3, stem_stride=stem_stride).eval()
    logits = model(torch.rand(2, 3, *size))
    assert logits.shape == (2, 6, *size)
    assert torch.isfinite(logits).all()


def test_paper_geometry_572_to_388_and_31_million_parameters():
    # Figure 1 of the paper: a 572x572 tile gives a 388x388 map; 31.03M parameters (2 classes, 1 channel).
    with torch.device("meta"):
        model = unet_paper()
        assert model(torch.empty(1, 1, 572, 572)).shape == (1, 2, 388, 388)
    assert sum(p.numel() for p in model.parameters()) == 31_030_658


def test_mini_has_about_483k_parameters_and_halves_the_resolution():
    model = unet_mini(6)
    assert 480_000 < sum(p.numel() for p in model.parameters()) < 490_000
    assert model.stem(torch.rand(1, 3, 96, 96)).shape[-2:] == (48, 48)


def test_every_parameter_receives_a_gradient():
    torch.manual_seed(0)
    check_every_parameter_receives_a_gradient(unet_mini(4), 4, (33, 40))


def test_channels_last_equals_contiguous():
    torch.manual_seed(0)
    check_channels_last_equals_contiguous(unet_mini(5).eval(), (45, 38))


def test_center_crop_takes_the_middle():
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    assert torch.equal(center_crop(x, (2, 2)), torch.tensor([[[[14.0, 15.0], [20.0, 21.0]]]]))
    with pytest.raises(ValueError, match="smaller"):
        center_crop(x, (7, 7))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="padding"):
        UNet(num_classes=2, padding="reflect")
    with pytest.raises(ValueError, match="stem_stride"):
        UNet(num_classes=2, stem_stride=4)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        unet_mini(2)(torch.rand(1, 1, 16, 16))


def test_valid_padding_rejects_tiles_whose_pools_see_odd_maps():
    with torch.device("meta"):
        model = unet_paper()
        assert model(torch.empty(1, 1, 572, 572)).shape == (1, 2, 388, 388)
        # 570 - 4 = 566 -> 283, then 283 - 4 = 279 is odd before the second pool
        with pytest.raises(ValueError, match=r"pool 2 of this \(570, 572\) input sees .*as 556 or 572"):
            model(torch.empty(1, 1, 570, 572))
        with pytest.raises(ValueError, match=r"such as 188\.$"):  # too small for four pools: the smallest tile
            model(torch.empty(1, 1, 40, 40))
    small = UNet(num_classes=2, in_channels=1, base_channels=2, depth=1, padding="valid", batch_norm=False)
    assert small(torch.rand(1, 1, 20, 20)).shape == (1, 2, 4, 4)  # 20 -> 16 -> 8 -> 4 -> 8 -> 4
    with pytest.raises(ValueError, match="as 20 or 22"):
        small(torch.rand(1, 1, 20, 21))
