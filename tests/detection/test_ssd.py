"""Tests for companion/detection/ssd.py: default boxes, hard negative mining, MultiBox loss, inference."""

import math
from types import SimpleNamespace

import pytest
import torch
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD as TorchvisionSSD

from companion.detection.matcher import match_anchors
from companion.detection.ssd import (
    SSDBackbone,
    default_box_scales,
    default_boxes,
    hard_negative_mining,
    multibox_loss,
    ssd_mini,
)

FEATURE_SIZES = [(24, 24), (12, 12), (6, 6)]


def _scene_batch(batch: int = 4, seed: int = 0) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Random images with 1-3 random boxes each (labels in 1..5), 96x96."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, 96, 96, generator=generator)
    targets = []
    for _ in range(batch):
        count = int(torch.randint(1, 4, (1,), generator=generator))
        corner = torch.rand(count, 2, generator=generator) * 50  # (K, 2)
        size = 16 + torch.rand(count, 2, generator=generator) * 30  # (K, 2)
        targets.append({"boxes": torch.cat([corner, corner + size], dim=1),
                        "labels": torch.randint(1, 6, (count,), generator=generator)})
    return images, targets


def test_scales_follow_the_paper_formula():
    scales = default_box_scales(3, s_min=0.2, s_max=0.5)
    assert scales == pytest.approx([0.2, 0.35, 0.5, 0.65])
    assert default_box_scales(6, 0.2, 0.9)[:6] == pytest.approx([0.2, 0.34, 0.48, 0.62, 0.76, 0.9])
    with pytest.raises(ValueError, match="s_min"):
        default_box_scales(3, s_min=0.6, s_max=0.5)


def test_default_box_count_and_geometry():
    scales = default_box_scales(3, 0.2, 0.5)
    ratios = [(2.0, 3.0), (2.0,), ()]
    boxes = default_boxes(FEATURE_SIZES, (96, 96), scales, ratios)
    assert boxes.shape == (576 * 6 + 144 * 4 + 36 * 2, 4)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    # The six boxes of the first position of the 24x24 map: centre (2, 2), the middle of a 4-pixel cell.
    assert torch.allclose(centres[:6], torch.tensor([2.0, 2.0]).expand(6, 2))
    s1, s_extra = 0.2 * 96, math.sqrt(0.2 * 0.35) * 96
    expected_w = [s1, s_extra, s1 * 2 ** 0.5, s1 / 2 ** 0.5, s1 * 3 ** 0.5, s1 / 3 ** 0.5]
    expected_h = [s1, s_extra, s1 / 2 ** 0.5, s1 * 2 ** 0.5, s1 / 3 ** 0.5, s1 * 3 ** 0.5]
    assert torch.allclose(widths[:6], torch.tensor(expected_w), atol=1e-4)
    assert torch.allclose(heights[:6], torch.tensor(expected_h), atol=1e-4)
    # Every box of ratio r has area s_k^2; the last map's boxes are centred on its 16-pixel cells.
    assert torch.allclose(centres[-2:], torch.tensor([[88.0, 88.0], [88.0, 88.0]]))
    assert torch.allclose(widths[-2:], torch.tensor([0.5 * 96, math.sqrt(0.5 * 0.65) * 96]), atol=1e-4)


def test_default_boxes_equal_torchvision():
    scales = default_box_scales(3, 0.2, 0.5)
    ratios = [[2, 3], [2], [2, 3]]
    generator = DefaultBoxGenerator(ratios, scales=scales, clip=False)
    feature_maps = [torch.zeros(1, 1, h, w) for h, w in FEATURE_SIZES]
    reference = generator(ImageList(torch.zeros(1, 3, 96, 96), [(96, 96)]), feature_maps)[0]
    ours = default_boxes(FEATURE_SIZES, (96, 96), scales, ratios)
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=0)


def test_hard_negative_mining_picks_the_top_loss_negatives():
    generator = torch.Generator().manual_seed(0)
    loss = torch.rand(3, 50, generator=generator)
    labels = torch.zeros(3, 50, dtype=torch.int64)
    labels[0, [3, 7]] = 1  # 2 positives -> 6 negatives
    labels[1, 10] = 4  # 1 positive -> 3 negatives
    labels[2, :45] = 2  # 45 positives, only 5 negatives: all of them
    selected = hard_negative_mining(loss, labels, neg_pos_ratio=3)
    assert selected.sum(dim=1).tolist() == [6, 3, 5]
    assert not (selected & (labels > 0)).any()
    for row, count in zip(range(3), [6, 3, 5]):
        negatives = torch.nonzero(labels[row] == 0).flatten()
        hardest = negatives[loss[row, negatives].argsort(descending=True)[:count]]
        assert set(torch.nonzero(selected[row]).flatten().tolist()) == set(hardest.tolist())


def test_multibox_loss_by_hand_on_a_tiny_case():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 2.0], [0.5, 0.0]]])  # (1, 5, 2)
    labels = torch.tensor([[1, 0, 0, 0, 0]])  # one positive -> the three hardest negatives
    regression = torch.tensor([[[0.5, 0.0, 2.0, 0.0]] + [[9.0] * 4] * 4])  # (1, 5, 4)
    box_targets = torch.zeros(1, 5, 4)
    losses = multibox_loss(logits, regression, labels, box_targets, neg_pos_ratio=3)
    ce = lambda z_true, z_other: math.log(1 + math.exp(z_other - z_true))  # two-class cross-entropy
    # Negative losses: box1 ce(0,1)=1.31, box2 ce(3,0)=0.05, box3 ce(0,2)=2.13, box4 ce(0.5,0)=0.47:
    # the three hardest are 3, 1 and 4.
    expected_cls = ce(0.0, 2.0) + ce(0.0, 2.0) + ce(0.0, 1.0) + ce(0.5, 0.0)
    assert float(losses["classification"]) == pytest.approx(expected_cls, rel=1e-6)
    assert float(losses["bbox_regression"]) == pytest.approx(0.5 * 0.5 ** 2 + (2.0 - 0.5), rel=1e-6)


def test_losses_equal_torchvision_compute_loss():
    torch.manual_seed(0)
    model = ssd_mini(num_classes=6).train()
    images, targets = _scene_batch()
    cls_logits, bbox_regression, anchors = model.head_outputs(images)
    ours = model(images, targets)
    matched_idxs = [match_anchors(anchors, t["boxes"], 0.5) for t in targets]
    fake_ssd = SimpleNamespace(box_coder=tv_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)), neg_to_pos_ratio=3)
    reference = TorchvisionSSD.compute_loss(fake_ssd, targets, {"cls_logits": cls_logits,
                                                                "bbox_regression": bbox_regression},
                                            [anchors] * len(targets), matched_idxs)
    for name in ("classification", "bbox_regression"):
        torch.testing.assert_close(ours[name], reference[name], rtol=1e-5, atol=1e-6)


def test_loss_is_finite_and_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = ssd_mini(num_classes=6).train()
    images, targets = _scene_batch()
    # One small, one medium and one large object, so that every feature map's heads have positives.
    targets[0] = {"boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0], [40.0, 20.0, 74.0, 54.0], [30.0, 30.0, 80.0, 80.0]]),
                  "labels": torch.tensor([1, 2, 3])}
    losses = model(images, targets)
    assert set(losses) == {"bbox_regression", "classification"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_batched_matching_equals_match_anchors():
    model = ssd_mini()
    images, targets = _scene_batch(batch=6, seed=3)
    targets[1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}  # no object
    _, _, anchors = model.head_outputs(images)
    cls_targets, box_targets = model.match_targets(targets, anchors)
    for labels, codes, target in zip(cls_targets, box_targets, targets):
        matches = match_anchors(anchors, target["boxes"], 0.5)
        positive = matches >= 0
        assert torch.equal(labels > 0, positive)
        assert torch.equal(labels[positive], target["labels"][matches[positive]])
        expected = model.box_coder.encode_single(target["boxes"][matches[positive]], anchors[positive])
        torch.testing.assert_close(codes[positive], expected)
        assert (codes[~positive] == 0).all()


def test_encode_decode_round_trip():
    model = ssd_mini()
    images, targets = _scene_batch(batch=1)
    _, _, anchors = model.head_outputs(images)
    matches = match_anchors(anchors, targets[0]["boxes"])
    positive = matches >= 0
    gt = targets[0]["boxes"][matches[positive]]
    codes = model.box_coder.encode_single(gt, anchors[positive])
    torch.testing.assert_close(model.box_coder.decode_single(codes, anchors[positive]), gt, atol=1e-4, rtol=0)
    # Each ground-truth box owns at least one default box, whatever its IoU.
    assert set(matches[positive].tolist()) == set(range(len(gt.unique(dim=0))))


def test_eval_mode_returns_well_formed_detections():
    torch.manual_seed(0)
    model = ssd_mini(num_classes=6, detections_per_img=20, score_threshold=0.0).eval()
    images, _ = _scene_batch(batch=3)
    with torch.no_grad():
        detections = model(images)
        from_list = model(list(images))
    assert len(detections) == 3
    for detection, other in zip(detections, from_list):
        assert set(detection) == {"boxes", "scores", "labels"}
        count = detection["scores"].shape[0]
        assert 0 < count <= 20
        assert detection["boxes"].shape == (count, 4) and detection["boxes"].dtype == torch.float32
        assert detection["labels"].dtype == torch.int64
        assert ((detection["labels"] >= 1) & (detection["labels"] <= 5)).all()
        assert (detection["scores"][:-1] >= detection["scores"][1:]).all()
        assert (detection["boxes"] >= 0).all() and (detection["boxes"] <= 96).all()
        torch.testing.assert_close(detection["scores"], other["scores"])


def test_channels_last_gives_the_same_outputs():
    torch.manual_seed(0)
    model = ssd_mini().eval()
    images, _ = _scene_batch(batch=2)
    with torch.no_grad():
        reference = model.head_outputs(images)
        model = model.to(memory_format=torch.channels_last)
        ours = model.head_outputs(images.contiguous(memory_format=torch.channels_last))
    for a, b in zip(reference, ours):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_overfits_four_scenes():
    torch.manual_seed(0)
    model = ssd_mini(num_classes=6).train()
    images, targets = _scene_batch(batch=4, seed=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(15):
        total = sum(model(images, targets).values())
        first = float(total.detach()) if first is None else first
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert float(total.detach()) < 0.1 * first


def test_background_prior_initialisation():
    model = ssd_mini(num_classes=6, background_prior=0.99)
    for head in model.classification_heads:
        head.weight.data.zero_()
    images, _ = _scene_batch(batch=1)
    cls_logits, _, _ = model.head_outputs(images)
    probabilities = cls_logits.softmax(dim=-1)  # (1, N, 6)
    torch.testing.assert_close(probabilities[..., 0], torch.full_like(probabilities[..., 0], 0.99))
    torch.testing.assert_close(probabilities[..., 1:], torch.full_like(probabilities[..., 1:], 0.002))


def test_bad_input():
    model = ssd_mini()
    with pytest.raises(ValueError, match="one target dict per image"):
        model.train()(torch.rand(2, 3, 96, 96), [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(2, 1, 96, 96))
    with pytest.raises(ValueError, match="loss and labels"):
        hard_negative_mining(torch.rand(2, 5), torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="num_classes"):
        ssd_mini(num_classes=1)
    with pytest.raises(ValueError, match="background_prior"):
        ssd_mini(background_prior=1.0)


def test_backbone_maps_and_top_down_path():
    images = torch.rand(2, 3, 96, 96)
    backbone = SSDBackbone().eval()
    features = backbone(images)
    assert [tuple(f.shape) for f in features] == [(2, 32, 24, 24), (2, 64, 12, 12), (2, 96, 6, 6)]
    assert backbone.out_channels == [32, 64, 96]
    # The top-down path makes the stride-4 map depend on the stride-8 stage; without it, it does not.
    with torch.no_grad():
        backbone.stages[0][1][0].weight.add_(1.0)
        assert not torch.allclose(backbone(images)[0], features[0])
    plain = SSDBackbone(top_down=False).eval()
    before = plain(images)[0]
    with torch.no_grad():
        plain.stages[0][1][0].weight.add_(1.0)
        torch.testing.assert_close(plain(images)[0], before)
    with pytest.raises(ValueError, match="channels"):
        SSDBackbone(channels=(16, 32))
