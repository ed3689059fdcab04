"""The detection training loop, loaders, flips and schedule."""

import math

import pytest
import torch
from torch import nn

from companion.detection.train import (detection_collate, fit_detector, horizontal_flip, make_detection_loader,
                                       predict_detections, warmup_cosine)


class ToyDataset(torch.utils.data.Dataset):
    """Four 8x8 images, one box each; the box is the target a toy detector regresses."""

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand(4, 3, 8, 8, generator=generator)
        self.boxes = torch.tensor([[0., 0., 4., 4.], [2., 2., 6., 8.], [1., 0., 3., 5.], [4., 4., 8., 8.]])

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return self.images[i], {"boxes": self.boxes[i:i + 1], "labels": torch.tensor([1])}


class ToyDetector(nn.Module):
    """Predicts one box per image from the mean colour: enough to exercise the interface."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 4)

    def forward(self, images, targets=None):
        boxes = self.linear(images.mean(dim=(2, 3)))  # (B, 4)
        if self.training:
            wanted = torch.cat([t["boxes"] for t in targets])  # (B, 4)
            return {"box": (boxes - wanted).abs().mean(), "zero": boxes.sum() * 0}
        return [{"boxes": b[None], "scores": torch.ones(1), "labels": torch.ones(1, dtype=torch.int64)}
                for b in boxes]


def test_collate_stacks_equal_sizes_and_lists_others():
    a, b = torch.zeros(3, 4, 4), torch.ones(3, 4, 4)
    images, targets = detection_collate([(a, {"x": 1}), (b, {"x": 2})])
    assert images.shape == (2, 3, 4, 4) and [t["x"] for t in targets] == [1, 2]
    images, _ = detection_collate([(a, {}), (torch.zeros(3, 5, 4), {})])
    assert isinstance(images, list) and len(images) == 2
    batch = (torch.zeros(2, 3, 4, 4), [{}, {}])
    assert detection_collate(batch) is batch


def test_loader_is_seeded():
    data = ToyDataset()
    first = [t[0]["boxes"] for _, t in make_detection_loader(data, 1, shuffle=True, seed=5)]
    second = [t[0]["boxes"] for _, t in make_detection_loader(data, 1, shuffle=True, seed=5)]
    assert all(torch.equal(x, y) for x, y in zip(first, second))
    with pytest.raises(ValueError, match="batch_size"):
        make_detection_loader(data, 0)


def test_horizontal_flip_moves_boxes_with_the_pixels():
    images = torch.zeros(2, 1, 6, 10)
    images[:, :, 1:3, 2:5] = 1.0  # the object's pixels: columns 2..4
    masks = images[:, 0] > 0
    targets = [{"boxes": torch.tensor([[2., 1., 5., 3.]]), "labels": torch.tensor([1]), "masks": masks[i:i + 1]}
               for i in range(2)]
    flipped, new_targets = horizontal_flip(images, targets, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(flipped[0, 0, 1, 5:8], torch.ones(3))  # columns 5..7 after mirroring
    assert torch.equal(new_targets[0]["boxes"], torch.tensor([[5., 1., 8., 3.]]))
    assert torch.equal(new_targets[0]["masks"][0], flipped[0, 0] > 0)
    assert torch.equal(targets[0]["boxes"], torch.tensor([[2., 1., 5., 3.]])), "inputs must not change"
    same, _ = horizontal_flip(images, targets, torch.Generator().manual_seed(0), p=0.0)
    assert torch.equal(same, images)


def test_horizontal_flip_of_inclusive_boxes_matches_masks_to_boxes_of_the_flipped_masks():
    """Real datasets' boxes (masks_to_boxes: x2 is the last column) need x -> W - 1 - x, not W - x."""
    from companion.detection.masks import masks_to_boxes

    generator = torch.Generator().manual_seed(0)
    photos, targets = [], []
    for height, width in [(7, 11), (5, 16), (9, 9)]:
        masks = torch.rand(3, height, width, generator=generator) > 0.7  # (3, H, W) random instance masks
        masks[:, 0, 0] = True  # none empty
        photos.append(masks.any(dim=0, keepdim=True).float())  # (1, H, W)
        targets.append({"boxes": masks_to_boxes(masks), "labels": torch.ones(3, dtype=torch.int64),
                        "masks": masks})
    flipped, new_targets = horizontal_flip(photos, targets, torch.Generator().manual_seed(0), p=1.0,
                                           inclusive_boxes=True)
    for target, new in zip(targets, new_targets):
        assert torch.equal(new["masks"], target["masks"].flip(-1))
        assert torch.equal(new["boxes"], masks_to_boxes(new["masks"]))
    # the default (one past the last column) would put each box a column too far right
    _, shifted = horizontal_flip(photos, targets, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(shifted[0]["boxes"][:, [0, 2]], new_targets[0]["boxes"][:, [0, 2]] + 1)


def test_horizontal_flip_of_photos_of_different_sizes_uses_each_width():
    """Photographs come as a list of differently sized images: each mirrors about its own width."""
    narrow, wide = torch.zeros(1, 6, 10), torch.zeros(1, 4, 16)
    narrow[:, 1:3, 2:5], wide[:, 0:2, 11:15] = 1.0, 1.0
    targets = [{"boxes": torch.tensor([[2., 1., 5., 3.]]), "labels": torch.tensor([1]), "masks": narrow > 0},
               {"boxes": torch.tensor([[11., 0., 15., 2.]]), "labels": torch.tensor([1]), "masks": wide > 0}]
    flipped, new_targets = horizontal_flip([narrow, wide], targets, torch.Generator().manual_seed(0), p=1.0)
    assert isinstance(flipped, list) and [image.shape for image in flipped] == [(1, 6, 10), (1, 4, 16)]
    assert torch.equal(new_targets[0]["boxes"], torch.tensor([[5., 1., 8., 3.]]))  # mirrored in 10 columns
    assert torch.equal(new_targets[1]["boxes"], torch.tensor([[1., 0., 5., 2.]]))  # mirrored in 16 columns
    for image, target in zip(flipped, new_targets):
        assert torch.equal(target["masks"], image > 0)
        x1, y1, x2, y2 = target["boxes"][0].long().tolist()
        assert bool(image[0, y1:y2, x1:x2].all()) and float(image.sum()) == (x2 - x1) * (y2 - y1)
    # The same draws as for a stacked batch: image k flips in the list exactly when it flips in the tensor.
    generator_a, generator_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    stacked = torch.rand(5, 1, 4, 6)
    as_tensor, _ = horizontal_flip(stacked, [targets[0]] * 5, generator_a)
    as_list, _ = horizontal_flip(list(stacked), [targets[0]] * 5, generator_b)
    assert torch.equal(torch.stack(as_list), as_tensor)
    same, _ = horizontal_flip([narrow, wide], targets, torch.Generator().manual_seed(0), p=0.0)
    assert torch.equal(same[0], narrow) and torch.equal(same[1], wide)


def test_fit_detector_lowers_the_loss_and_records_every_step():
    torch.manual_seed(0)
    model = ToyDetector()
    loader = make_detection_loader(ToyDataset(), 2, shuffle=True, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    history = fit_detector(model, optimizer, loader, epochs=30)
    assert len(history) == 60 and set(history[0]) == {"box", "zero", "total"}
    assert history[-1]["total"] < 0.7 * history[0]["total"]
    detections = predict_detections(model, ToyDataset(), batch_size=3)
    assert len(detections) == 4 and detections[0]["boxes"].shape == (1, 4)


def test_fit_detector_stops_on_a_non_finite_loss():
    model = ToyDetector()
    with torch.no_grad():
        model.linear.bias.fill_(float("nan"))
    loader = make_detection_loader(ToyDataset(), 2)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit_detector(model, torch.optim.SGD(model.parameters(), lr=0.1), loader)


def test_warmup_cosine_shape():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_cosine(optimizer, total_steps=10, warmup_steps=2)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.5) and rates[1] == pytest.approx(1.0)
    assert rates[2] == pytest.approx(1.0) and rates[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert all(a >= b for a, b in zip(rates[1:], rates[2:]))
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine(optimizer, total_steps=5, warmup_steps=5)
