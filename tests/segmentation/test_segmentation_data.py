"""Class masks from the scenes' instance maps."""

import pytest
import torch

from companion.data import make_loader
from companion.detection.scenes import FashionScenes
from companion.segmentation.data import SceneSegmentation, semantic_mask


def test_semantic_mask_maps_instances_to_their_classes():
    instance_map = torch.tensor([[0, 1, 1], [2, 2, 0]], dtype=torch.uint8)
    mask = semantic_mask(instance_map, torch.tensor([4, 2]))
    assert torch.equal(mask, torch.tensor([[0, 4, 4], [2, 2, 0]]))
    assert mask.dtype == torch.int64
    with pytest.raises(ValueError, match="one label per instance"):
        semantic_mask(instance_map, torch.tensor([4]))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        semantic_mask(instance_map[None], torch.tensor([4, 2]))


def test_scene_segmentation_agrees_with_the_instance_masks():
    scenes = FashionScenes("val", size=8, seed=0)
    data = SceneSegmentation(scenes)
    assert len(data) == 8 and data.num_classes == 6
    for i in range(len(data)):
        image, mask = data[i]
        target = scenes.target(i)
        expected = torch.zeros(96, 96, dtype=torch.int64)
        for label, instance in zip(target["labels"], target["masks"]):
            expected[instance] = label
        assert torch.equal(mask, expected)
        assert torch.equal(image, scenes[i][0])
    images, masks = next(iter(make_loader(data, batch_size=4)))
    assert images.shape == (4, 3, 96, 96) and masks.shape == (4, 96, 96)


class _PairList(torch.utils.data.Dataset):
    """(image, mask) pairs without ``__getitems__``: RandomCrops must fall back to one item at a time."""

    def __init__(self, images, masks):
        self.images, self.masks = images, masks

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], self.masks[index]


def _pairs(n=6, height=12, width=15, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, height, width, generator=generator)
    masks = torch.randint(0, 5, (n, height, width), generator=generator)
    return images, masks


def test_random_crops_equal_torchvision_crop_of_image_and_mask():
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as TF

    from companion.segmentation.data import RandomCrops

    images, masks = _pairs()
    crops = RandomCrops(_PairList(images, masks), size=7, seed=3)
    for i in range(len(crops)):
        image, mask = crops[i]
        top, left = crops.window(i, 12, 15)
        assert torch.equal(image, TF.crop(images[i], top, left, 7, 7))
        assert torch.equal(mask, TF.crop(tv_tensors.Mask(masks[i]), top, left, 7, 7).as_subclass(torch.Tensor))
        assert image.shape == (3, 7, 7) and mask.shape == (7, 7)


def test_random_crops_batches_equal_single_items_and_ignore_the_batch_order():
    from companion.segmentation.data import RandomCrops

    data = SceneSegmentation(FashionScenes("val", size=6, seed=0))
    crops = RandomCrops(data, size=40, seed=1)
    images, masks = crops.__getitems__([5, 0, 3])
    assert images.shape == (3, 3, 40, 40) and masks.shape == (3, 40, 40) and masks.dtype == torch.int64
    for row, index in enumerate([5, 0, 3]):
        image, mask = crops[index]
        assert torch.equal(images[row], image) and torch.equal(masks[row], mask)
    # The same through a DataLoader, and the dataset's class names pass through.
    batch_images, batch_masks = next(iter(make_loader(crops, batch_size=4)))
    assert batch_images.shape == (4, 3, 40, 40) and torch.equal(batch_masks[1], crops[1][1])
    assert crops.classes == data.classes and crops.num_classes == data.num_classes == 6
    # Without __getitems__ the batch is assembled item by item, with the same windows.
    plain = RandomCrops(_PairList(*_pairs()), size=5, seed=0)
    batch = plain.__getitems__([2, 4])
    assert torch.equal(batch[0][1], plain[4][0]) and torch.equal(batch[1][0], plain[2][1])


def test_random_crops_are_reproducible_new_each_epoch_and_cover_every_position():
    from companion.segmentation.data import RandomCrops

    pairs = _PairList(*_pairs(n=200, height=10, width=12))
    first, again = RandomCrops(pairs, size=7, seed=0), RandomCrops(pairs, size=7, seed=0)
    windows = [first.window(i, 10, 12) for i in range(200)]
    assert windows == [again.window(i, 10, 12) for i in range(200)]
    assert windows != [RandomCrops(pairs, size=7, seed=1).window(i, 10, 12) for i in range(200)]
    first.set_epoch(1)
    assert windows != [first.window(i, 10, 12) for i in range(200)]
    # Every top in 0..3 and every left in 0..5 occurs, and nothing outside: the window stays inside.
    assert {top for top, _ in windows} == set(range(4)) and {left for _, left in windows} == set(range(6))
    # A crop as large as the image is the image.
    whole = RandomCrops(pairs, size=10, seed=0)
    assert whole.window(0, 10, 10) == (0, 0)


def test_random_crops_reject_bad_arguments_with_the_fix():
    from companion.segmentation.data import RandomCrops

    pairs = _PairList(*_pairs())
    with pytest.raises(ValueError, match="at most 12"):
        RandomCrops(pairs, size=13)[0]
    for size in (0, -4, 2.5, True):
        with pytest.raises(ValueError, match="size must be a positive"):
            RandomCrops(pairs, size=size)
    with pytest.raises(ValueError, match="seed must be a non-negative"):
        RandomCrops(pairs, size=4, seed=-1)
    with pytest.raises(ValueError, match="epoch must be a non-negative"):
        RandomCrops(pairs, size=4).set_epoch(-2)
