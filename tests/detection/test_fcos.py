"""Tests for companion/detection/fcos.py: focal loss equals torchvision's, FCOS targets, the fcos_mini detector."""

import pytest
import torch
import torchvision.ops

from companion.detection.fcos import (
    centerness_target,
    fcos_mini,
    fcos_targets,
    sigmoid_focal_loss,
)


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.5, 0.0), (-1.0, 1.5)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_focal_loss_equals_torchvision(alpha, gamma, reduction):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 5, generator=generator) * 3
    targets = (torch.rand(64, 5, generator=generator) < 0.3).float()
    ours = sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction)
    reference = torchvision.ops.sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-7)


def test_focal_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss(torch.zeros(3), torch.zeros(3), reduction="max")
    with pytest.raises(ValueError, match="same shape"):
        sigmoid_focal_loss(torch.zeros(3), torch.zeros(4))


def test_fcos_targets_on_a_hand_made_case():
    # 4 x 4 locations at stride 8 (centres 4, 12, 20, 28); a 32 x 32 box centred at (16, 16).
    xs = torch.tensor([4.0, 12.0, 20.0, 28.0])
    grid_y, grid_x = torch.meshgrid(xs, xs, indexing="ij")
    points = torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)  # (16, 2) row by row
    big = torch.tensor([[0.0, 0.0, 32.0, 32.0]])
    matched, ltrb = fcos_targets(points, big, stride=8, center_radius=1.5)
    # centre sampling: |x - 16| < 12 keeps x = 12 and 20 only, so the four middle locations
    positive = matched.reshape(4, 4) >= 0
    assert positive.tolist() == [[False] * 4, [False, True, True, False], [False, True, True, False], [False] * 4]
    torch.testing.assert_close(ltrb[5], torch.tensor([12.0, 12.0, 20.0, 20.0]))  # location (12, 12)
    assert (ltrb[~positive.flatten()] == 0).all()
    # a smaller box around (20, 20) takes the location it shares with the big one
    small = torch.tensor([[14.0, 14.0, 26.0, 26.0]])
    matched, ltrb = fcos_targets(points, torch.cat([big, small]), stride=8, center_radius=1.5)
    assert matched[10] == 1 and matched[5] == 0
    torch.testing.assert_close(ltrb[10], torch.tensor([6.0, 6.0, 6.0, 6.0]))
    empty_matched, empty_ltrb = fcos_targets(points, torch.zeros(0, 4), stride=8)
    assert (empty_matched == -1).all() and empty_ltrb.shape == (16, 4)


def test_centerness_is_one_at_the_centre_and_falls_towards_the_border():
    ltrb = torch.tensor([[10.0, 10.0, 10.0, 10.0], [2.0, 10.0, 18.0, 10.0], [1.0, 1.0, 9.0, 9.0]])
    torch.testing.assert_close(centerness_target(ltrb), torch.tensor([1.0, (2 / 18) ** 0.5, 1 / 9]))


def _scenes(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, 64, 64, generator=generator)
    targets = [{"boxes": torch.tensor([[8.0, 10.0, 30.0, 34.0], [30.0, 28.0, 60.0, 60.0]]),
                "labels": torch.tensor([1, 2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    return images, targets


def test_fcos_mini_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = fcos_mini(num_classes=3, width=8).train()
    images, targets = _scenes()
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box", "loss_centerness"}
    sum(losses.values()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_fcos_mini_eval_output_is_well_formed():
    torch.manual_seed(0)
    model = fcos_mini(num_classes=3, width=8, score_threshold=0.0).eval()
    images, _ = _scenes()
    detections = model(list(images))
    assert len(detections) == 2
    for detection in detections:
        count = detection["boxes"].shape[0]
        assert 0 < count <= 100 and detection["boxes"].shape == (count, 4)
        assert detection["scores"].shape == (count,) and detection["labels"].dtype == torch.int64
        assert ((detection["labels"] >= 1) & (detection["labels"] <= 2)).all()
        assert (detection["boxes"] >= 0).all() and (detection["boxes"] <= 64).all()
        assert (detection["scores"][1:] <= detection["scores"][:-1]).all()
    with pytest.raises(ValueError, match="targets"):
        model.train()(images)


def test_fcos_mini_overfits_two_images():
    torch.manual_seed(0)
    model = fcos_mini(num_classes=3, width=8).train()
    images, targets = _scenes()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    totals = []
    for _ in range(15):
        total = sum(model(images, targets).values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total.detach()))
    assert totals[-1] < 0.5 * totals[0]


def test_fcos_mini_channels_last_gives_the_same_detections():
    torch.manual_seed(0)
    model = fcos_mini(num_classes=3, width=8, score_threshold=0.0).eval()
    images, _ = _scenes()
    expected = model(images)
    found = model(images.to(memory_format=torch.channels_last))
    for a, b in zip(found, expected):
        torch.testing.assert_close(a["scores"][:10], b["scores"][:10], rtol=1e-4, atol=1e-5)
