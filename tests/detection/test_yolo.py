"""Tests for companion/detection/yolo.py: YOLO v1's targets and loss, and the yolo_mini detector."""

import math

import pytest
import torch

from companion.detection.boxes import box_iou, generalized_box_iou
from companion.detection.yolo import (
    paired_giou_and_iou,
    yolo_mini,
    yolo_v1_loss,
    yolo_v1_targets,
)


def test_v1_targets_put_each_object_in_the_cell_of_its_centre():
    # 70 x 70 image, S = 7: cells of 10 pixels. Centre (25, 34) -> column 2, row 3, offsets (0.5, 0.4).
    boxes = torch.tensor([[15.0, 24.0, 35.0, 44.0], [60.0, 0.0, 70.0, 14.0]])
    labels = torch.tensor([3, 1])
    target = yolo_v1_targets(boxes, labels, (70, 70), grid_size=7, num_classes=4)
    assert target.shape == (7, 7, 9)
    assert target[..., 0].sum() == 2
    torch.testing.assert_close(target[3, 2], torch.tensor([1, 0.5, 0.4, 20 / 70, 20 / 70, 0, 0, 1, 0]))
    # centre (65, 7): column 6, row 0
    torch.testing.assert_close(target[0, 6], torch.tensor([1, 0.5, 0.7, 10 / 70, 14 / 70, 1, 0, 0, 0]))


def test_v1_targets_keep_one_object_per_cell_and_reject_bad_labels():
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], [2.0, 2.0, 6.0, 6.0]])  # both centres in cell (0, 0)
    target = yolo_v1_targets(boxes, torch.tensor([1, 2]), (70, 70), grid_size=7, num_classes=2)
    assert target[..., 0].sum() == 1 and target[0, 0, 5] == 1  # the first object listed is kept
    with pytest.raises(ValueError, match="labels"):
        yolo_v1_targets(boxes, torch.tensor([0, 1]), (70, 70), num_classes=2)
    empty = yolo_v1_targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), (70, 70), num_classes=2)
    assert empty.abs().sum() == 0


def _perfect_predictions(target: torch.Tensor, num_boxes: int = 2) -> torch.Tensor:
    """Predictions with the right box and confidence 1 in predictor 0 and confidence 0 elsewhere."""
    grid, num_classes = target.shape[0], target.shape[-1] - 5
    prediction = torch.zeros(grid, grid, 5 * num_boxes + num_classes)
    prediction[..., 0:2] = target[..., 1:3]
    prediction[..., 2:4] = target[..., 3:5].sqrt()
    prediction[..., 4] = target[..., 0]
    prediction[..., 5:10] = torch.tensor([0.9, 0.9, 0.01, 0.01, 0.0])  # a tiny box far from the truth
    prediction[..., 5 * num_boxes:] = target[..., 5:]
    return prediction


def test_v1_loss_is_zero_for_perfect_predictions_and_finite_otherwise():
    boxes = torch.tensor([[15.0, 24.0, 35.0, 44.0], [40.0, 40.0, 70.0, 66.0]])
    target = yolo_v1_targets(boxes, torch.tensor([3, 1]), (70, 70), grid_size=7, num_classes=4)[None]
    perfect = _perfect_predictions(target[0])[None]
    assert yolo_v1_loss(perfect, target).abs() < 1e-6
    noisy = perfect + 0.1 * torch.randn(perfect.shape, generator=torch.Generator().manual_seed(0))
    loss = yolo_v1_loss(noisy, target)
    assert torch.isfinite(loss) and loss > 0


def test_v1_loss_weights_empty_cells_by_lambda_noobj():
    target = torch.zeros(2, 7, 7, 5 + 3)  # no objects at all
    prediction = torch.zeros(2, 7, 7, 10 + 3)
    prediction[..., 4] = 0.2  # confidence of predictor 0 everywhere
    prediction[..., 9] = 0.4  # confidence of predictor 1
    expected = 0.5 * 49 * 2 * (0.2**2 + 0.4**2) / 2  # lambda_noobj * sum of squares / batch size
    torch.testing.assert_close(yolo_v1_loss(prediction, target), torch.tensor(expected))


def test_v1_loss_trains_only_the_predictor_with_the_higher_iou():
    boxes = torch.tensor([[15.0, 24.0, 35.0, 44.0]])
    target = yolo_v1_targets(boxes, torch.tensor([1]), (70, 70), grid_size=7, num_classes=2)[None]
    prediction = torch.zeros(1, 7, 7, 12)
    prediction[0, 3, 2, 0:5] = torch.tensor([0.9, 0.9, 0.1, 0.1, 0.5])  # far off
    prediction[0, 3, 2, 5:10] = torch.tensor([0.45, 0.45, 0.5, 0.5, 0.5])  # close: responsible
    prediction.requires_grad_(True)
    yolo_v1_loss(prediction, target).backward()
    gradient = prediction.grad[0, 3, 2]
    assert gradient[0:4].abs().sum() == 0  # the other predictor's box is not trained
    assert gradient[5:9].abs().sum() > 0
    assert gradient[4] > 0  # its confidence is pushed towards 0 (lambda_noobj term)
    with pytest.raises(ValueError, match="targets must have shape"):
        yolo_v1_loss(prediction, target[..., :6])


def test_paired_giou_is_the_diagonal_of_the_pairwise_matrices():
    generator = torch.Generator().manual_seed(0)
    corner = torch.rand(50, 2, 2, generator=generator) * 50
    boxes1 = torch.cat([corner[:, 0], corner[:, 0] + torch.rand(50, 2, generator=generator) * 30 + 1], 1)
    boxes2 = torch.cat([corner[:, 1], corner[:, 1] + torch.rand(50, 2, generator=generator) * 30 + 1], 1)
    giou, iou = paired_giou_and_iou(boxes1, boxes2)
    torch.testing.assert_close(giou, generalized_box_iou(boxes1, boxes2).diagonal())
    torch.testing.assert_close(iou, box_iou(boxes1, boxes2).diagonal())


def test_yolo_mini_assigns_the_cells_near_the_object_centre():
    model = yolo_mini(num_classes=3, center_radius=1.0)  # stride 4: cell centres at 2, 6, 10, ...
    # centre (21, 31): cell centres within 4 px on both axes are x in {18, 22}, y in {30, 34}
    target = {"boxes": torch.tensor([[11.0, 21.0, 31.0, 41.0]]), "labels": torch.tensor([2])}
    centres = torch.tensor([[2.0 + 4 * column, 2.0 + 4 * row] for row in range(24) for column in range(24)])
    image, cell, boxes, labels = model.assign([target], centres)
    assert sorted(cell.tolist()) == sorted([7 * 24 + 4, 7 * 24 + 5, 8 * 24 + 4, 8 * 24 + 5])
    assert image.tolist() == [0] * 4 and labels.tolist() == [2] * 4
    assert torch.equal(boxes, target["boxes"].expand(4, 4))
    # the default radius 1.5 (6 px) takes a 3 x 3 block for a centre on a cell centre
    target = {"boxes": torch.tensor([[8.0, 8.0, 28.0, 28.0]]), "labels": torch.tensor([1])}  # centre (18, 18)
    _, cell, _, _ = yolo_mini(num_classes=3).assign([target], centres)
    assert sorted(cell.tolist()) == sorted([row * 24 + column for row in (3, 4, 5) for column in (3, 4, 5)])
    with pytest.raises(ValueError, match="center_radius"):
        yolo_mini(num_classes=3, center_radius=0.4)


def test_yolo_mini_gives_a_shared_cell_to_the_smaller_object_and_skips_empty_images():
    model = yolo_mini(num_classes=3)
    big = torch.tensor([[0.0, 0.0, 36.0, 36.0]])  # centre (18, 18)
    small = torch.tensor([[13.0, 13.0, 23.0, 23.0]])  # centre (18, 18) too: the same 3 x 3 block of cells
    target = {"boxes": torch.cat([big, small]), "labels": torch.tensor([1, 2])}
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    centres = torch.tensor([[2.0 + 4 * column, 2.0 + 4 * row] for row in range(24) for column in range(24)])
    image, cell, _, labels = model.assign([empty, target], centres)
    assert labels.tolist() == [2] * 9 and len(set(cell.tolist())) == 9 and image.tolist() == [1] * 9
    image, cell, boxes, labels = model.assign([empty], centres)
    assert image.numel() == 0 and boxes.shape == (0, 4)


def test_yolo_mini_decodes_centre_offsets_and_sizes():
    model = yolo_mini(num_classes=3)
    raw = torch.tensor([[[0.5, -0.25, 0.0, math.log(2.0)]]])  # (1, 1, 4)
    boxes = model.decode(raw, torch.tensor([[10.0, 20.0]]))
    # centre (10 + 2, 20 - 1), size (4, 8)
    torch.testing.assert_close(boxes, torch.tensor([[[10.0, 15.0, 14.0, 23.0]]]))


def _scenes(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, 64, 64, generator=generator)
    targets = [{"boxes": torch.tensor([[8.0, 10.0, 30.0, 34.0], [30.0, 28.0, 60.0, 60.0]]),
                "labels": torch.tensor([1, 2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    return images, targets


def test_yolo_mini_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = yolo_mini(num_classes=3, width=8).train()
    images, targets = _scenes()
    losses = model(images, targets)
    assert set(losses) == {"loss_box", "loss_objectness", "loss_classifier"}
    sum(losses.values()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_yolo_mini_eval_output_is_well_formed():
    torch.manual_seed(0)
    model = yolo_mini(num_classes=3, width=8, score_threshold=0.0).eval()
    images, _ = _scenes()
    detections = model(list(images))  # a list of images is accepted too
    assert len(detections) == 2
    for detection in detections:
        count = detection["boxes"].shape[0]
        assert 0 < count <= 100
        assert detection["boxes"].dtype == torch.float32 and detection["boxes"].shape == (count, 4)
        assert detection["scores"].shape == (count,) and detection["labels"].dtype == torch.int64
        assert ((detection["labels"] >= 1) & (detection["labels"] <= 2)).all()
        assert (detection["boxes"] >= 0).all() and (detection["boxes"] <= 64).all()
        assert (detection["scores"][1:] <= detection["scores"][:-1]).all()
    with pytest.raises(ValueError, match="targets"):
        model.train()(images)
    with pytest.raises(ValueError, match="num_classes"):
        yolo_mini(num_classes=1)


def test_yolo_mini_overfits_two_images():
    torch.manual_seed(0)
    model = yolo_mini(num_classes=3, width=8).train()
    images, targets = _scenes()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    totals = []
    for _ in range(30):
        total = sum(model(images, targets).values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total.detach()))
    assert totals[-1] < 0.5 * totals[0]


def test_yolo_mini_channels_last_gives_the_same_outputs():
    torch.manual_seed(0)
    model = yolo_mini(num_classes=3, width=8).eval()
    images, _ = _scenes()
    with torch.no_grad():
        contiguous = model.raw_outputs(images)
        channels_last = model.to(memory_format=torch.channels_last).raw_outputs(
            images.to(memory_format=torch.channels_last))
    torch.testing.assert_close(channels_last, contiguous, rtol=1e-4, atol=1e-5)
