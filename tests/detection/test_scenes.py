"""FashionScenes: deterministic, exact boxes and masks, splits that share no item, clear errors."""

import numpy as np
import pytest
import torch

from companion.detection.scenes import (DISTINCT_CLASSES, FashionScenes, boxes_from_instance_map,
                                        instance_masks, render_scene)


@pytest.fixture(scope="module")
def scenes():
    return FashionScenes("train", size=24, seed=3)


def test_same_arguments_give_the_same_scenes(scenes):
    again = FashionScenes("train", size=24, seed=3)
    assert torch.equal(scenes.images, again.images)
    assert torch.equal(scenes.instance_maps, again.instance_maps)
    for i in range(len(scenes)):
        assert torch.equal(scenes.target(i)["boxes"], again.target(i)["boxes"])
        assert torch.equal(scenes.target(i)["labels"], again.target(i)["labels"])


def test_another_seed_gives_other_scenes(scenes):
    assert not torch.equal(scenes.images, FashionScenes("train", size=24, seed=4).images)


def test_items_shapes_and_label_range(scenes):
    image, target = scenes[0]
    assert image.shape == (3, 96, 96) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert scenes.classes[0] == "background" and scenes.num_classes == 6
    assert scenes.classes[1:] == ["Trouser", "Dress", "Sneaker", "Bag", "Ankle boot"]
    for i in range(len(scenes)):
        target = scenes.target(i)
        count = target["labels"].shape[0]
        assert 1 <= count <= 4
        assert target["boxes"].shape == (count, 4) and target["boxes"].dtype == torch.float32
        assert target["masks"].shape == (count, 96, 96) and target["masks"].dtype == torch.bool
        assert int(target["labels"].min()) >= 1 and int(target["labels"].max()) <= 5


def test_boxes_enclose_the_visible_masks_exactly(scenes):
    for i in range(len(scenes)):
        target = scenes.target(i)
        masks = target["masks"]
        assert masks.sum(dim=0).max() <= 1, "visible masks must not overlap"
        for box, mask in zip(target["boxes"], masks):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            expected = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
            assert torch.equal(box, expected)


def test_labels_match_the_pasted_fashion_items(scenes):
    from companion.data import get_dataset

    source = get_dataset("fashion-mnist", "train")
    for i in range(len(scenes)):
        fashion = source.labels[scenes.source_indices[i]]
        ours = torch.tensor([DISTINCT_CLASSES[int(k) - 1] for k in scenes.target(i)["labels"]])
        assert torch.equal(fashion, ours)


def test_splits_never_share_an_item():
    train = FashionScenes("train", size=12, seed=0)
    val = FashionScenes("val", size=12, seed=0)
    assert all(int(s.max()) < 50_000 for s in train.source_indices)
    assert all(int(s.min()) >= 50_000 for s in val.source_indices)
    test = FashionScenes("test", size=12, seed=0)
    assert all(int(s.max()) < 10_000 for s in test.source_indices)
    assert not torch.equal(train.images, test.images)


def test_all_ten_classes():
    scenes = FashionScenes("val", size=30, seed=1, classes="all")
    assert len(scenes.classes) == 11
    labels = torch.cat([scenes.target(i)["labels"] for i in range(len(scenes))])
    assert int(labels.max()) <= 10 and len(labels.unique()) >= 6


def test_getitems_batches_images_and_targets(scenes):
    images, targets = scenes.__getitems__([2, 0, 5])
    assert images.shape == (3, 3, 96, 96)
    assert torch.equal(images[1], scenes[0][0])
    assert torch.equal(targets[2]["boxes"], scenes.target(5)["boxes"])


def test_render_scene_keeps_earlier_items_mostly_visible():
    rng = np.random.default_rng(0)
    blob = torch.zeros(28, 28)
    blob[4:24, 4:24] = 1.0  # a square item: its full mask is known
    for max_hidden in (0.25, 0.5):
        for _ in range(10):
            # min_size == max_size == 28: every patch is the blob itself, a 20 x 20 mask of 400 pixels
            image, instance_map, placed = render_scene([blob] * 4, rng, canvas_size=48, min_size=28, max_size=28,
                                                       max_hidden=max_hidden)
            assert image.shape == (3, 48, 48)
            assert int(instance_map.max()) == len(placed) >= 1
            visible = instance_masks(instance_map, len(placed)).flatten(1).sum(1)  # (K,)
            assert (visible >= (1.0 - max_hidden) * 400).all()
            assert visible[-1] == 400  # the last item painted is never covered
            boxes = boxes_from_instance_map(instance_map, len(placed))
            assert ((boxes[:, 2:] - boxes[:, :2]) >= 1).all()


def test_render_scene_paints_exactly_the_mask_opaquely():
    rng = np.random.default_rng(1)
    blob = torch.zeros(28, 28)
    blob[4:24, 6:20] = 0.4  # dim but above MASK_THRESHOLD: blended, the background would show through
    image, instance_map, placed = render_scene([blob], rng, canvas_size=40, min_size=28, max_size=28)
    assert placed == [0]
    mask = instance_map == 1  # (40, 40)
    assert int(mask.sum()) == 20 * 14
    colours = image[:, mask]  # (3, 280)
    assert torch.equal(colours, colours[:, :1].expand_as(colours))  # one colour: no background shows through


def test_render_scene_rejects_a_bad_max_hidden():
    with pytest.raises(ValueError, match="max_hidden must be a fraction"):
        render_scene([torch.ones(28, 28)], np.random.default_rng(0), max_hidden=1.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "validation"}, "split must be one of"),
    ({"classes": "five"}, "classes must be"),
    ({"size": 0}, "size must be a positive"),
    ({"min_items": 3, "max_items": 2}, "min_items <= max_items"),
    ({"size": 2, "max_size": 200}, "max_size <= canvas_size"),
])
def test_bad_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FashionScenes(**kwargs)
