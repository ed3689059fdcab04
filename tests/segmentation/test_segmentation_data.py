"""Class masks from the scenes' instance maps."""

import pytest
import torch

from companion.data import make_loader
from companion.detection.scenes import FashionScenes
from companion.segmentation.data import IGNORE_INDEX, SceneSegmentation, semantic_mask


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


# ---------------------------------------------------------------------------------------------
# ScaleCropPad: photographs of any size as fixed-size examples


def _photos(sizes=((20, 30), (31, 17), (9, 12), (40, 40)), seed=0):
    """(image, mask) pairs of different sizes, like the photographs of VOC or Pets."""
    generator = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, h, w, generator=generator) for h, w in sizes]
    masks = [torch.randint(0, 21, (h, w), generator=generator) for h, w in sizes]
    for mask in masks:
        mask[0, :3] = IGNORE_INDEX  # a void outline survives scaling as 255
    return _PairList(images, masks)


def _torchvision_scale_crop_pad(image, mask, choice, size, fill):
    """The same four steps with torchvision.transforms.v2 (Mask: nearest-neighbour resize)."""
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as TF

    mask = tv_tensors.Mask(mask)
    shape = [choice["height"], choice["width"]]
    image, mask = TF.resize(image, shape, antialias=True), TF.resize(mask, shape)
    pad = [0, 0, max(size - shape[1], 0), max(size - shape[0], 0)]  # left, top, right, bottom
    image, mask = TF.pad(image, pad, fill=fill), TF.pad(mask, pad, fill=IGNORE_INDEX)
    image = TF.crop(image, choice["top"], choice["left"], size, size)
    mask = TF.crop(mask, choice["top"], choice["left"], size, size)
    if choice["flip"]:
        image, mask = TF.horizontal_flip(image), TF.horizontal_flip(mask)
    return image, mask.as_subclass(torch.Tensor)


def test_scale_crop_pad_equals_torchvision_resize_pad_crop_and_flip():
    from companion.segmentation.data import ScaleCropPad

    photos = _photos()
    data = ScaleCropPad(photos, size=16, longer_side=24, scale=(0.5, 2.0), flip=True, fill=0.5, seed=2)
    flips, shrunk, grown = set(), 0, 0
    for epoch in range(6):
        data.set_epoch(epoch)
        for i in range(len(photos)):
            image, mask = data[i]
            height, width = photos.masks[i].shape
            choice = data.params(i, height, width)
            expected_image, expected_mask = _torchvision_scale_crop_pad(photos.images[i], photos.masks[i], choice,
                                                                        16, 0.5)
            assert image.shape == (3, 16, 16) and mask.shape == (16, 16) and mask.dtype == torch.int64
            torch.testing.assert_close(image, expected_image, rtol=0, atol=1e-6)
            assert torch.equal(mask, expected_mask)
            # Every mask value is one the original had, or the padding's 255.
            assert set(mask.unique().tolist()) <= set(photos.masks[i].unique().tolist()) | {IGNORE_INDEX}
            flips.add(choice["flip"])
            shrunk += max(choice["height"], choice["width"]) < max(height, width)
            grown += max(choice["height"], choice["width"]) > max(height, width)
            # The factor is (24 / longer side) * s with s in [0.5, 2]: the longer side lands in [12, 48].
            assert 12 <= max(choice["height"], choice["width"]) <= 48
    assert flips == {False, True} and shrunk and grown


def test_scale_crop_pad_for_evaluation_keeps_the_whole_image_and_pads_with_ignore():
    from companion.segmentation.data import ScaleCropPad

    photos = _photos()
    data = ScaleCropPad(photos, size=24, longer_side=24)  # no scale range, no flip: deterministic
    images, masks = data.__getitems__([0, 1, 2, 3])
    assert images.shape == (4, 3, 24, 24) and masks.shape == (4, 24, 24)
    # 20 x 30 -> 16 x 24: bottom 8 rows padded; 31 x 17 -> 24 x 13: right 11 columns padded.
    assert data.params(0, 20, 30) == {"height": 16, "width": 24, "top": 0, "left": 0, "flip": False}
    assert bool((masks[0, 16:] == IGNORE_INDEX).all()) and bool((images[0, :, 16:] == 0).all())
    assert not bool((masks[0, :16] == IGNORE_INDEX).all())
    assert data.params(1, 31, 17)["width"] == 13 and bool((masks[1, :, 13:] == IGNORE_INDEX).all())
    # 9 x 12 is enlarged to 18 x 24; 40 x 40 shrinks to 24 x 24 with nothing padded.
    assert data.params(2, 9, 12)["height"] == 18 and not bool((masks[3] == IGNORE_INDEX).all(dim=1).any())
    for epoch in (0, 3):  # the same whatever the epoch
        data.set_epoch(epoch)
        assert torch.equal(data[2][0], images[2]) and torch.equal(data[2][1], masks[2])
    # Without longer_side nor scale the images keep their resolution: a crop of the original.
    same = ScaleCropPad(photos, size=8, seed=1)
    choice = same.params(3, 40, 40)
    image, mask = same[3]
    top, left = choice["top"], choice["left"]
    assert torch.equal(image, photos.images[3][:, top:top + 8, left:left + 8])
    assert torch.equal(mask, photos.masks[3][top:top + 8, left:left + 8])


def test_scale_crop_pad_batches_through_a_loader_reproducibly_and_new_each_epoch():
    from companion.segmentation.data import ScaleCropPad

    photos = _photos()
    photos.classes, photos.num_classes = ["background", "cat", "dog"], 3
    first = ScaleCropPad(photos, size=16, longer_side=20, scale=(0.5, 1.5), flip=True, seed=0)
    again = ScaleCropPad(photos, size=16, longer_side=20, scale=(0.5, 1.5), flip=True, seed=0)
    images, masks = next(iter(make_loader(first, batch_size=4)))  # mixed sizes, one batch
    assert images.shape == (4, 3, 16, 16) and masks.shape == (4, 16, 16)
    assert first.classes == ["background", "cat", "dog"] and first.num_classes == 3
    assert torch.equal(again.__getitems__([0, 1, 2, 3])[1], masks)
    before = [first.params(i, *photos.masks[i].shape) for i in range(4)]
    first.set_epoch(1)
    assert before != [first.params(i, *photos.masks[i].shape) for i in range(4)]


def test_scale_crop_pad_rejects_bad_arguments_and_items_with_the_fix():
    from companion.segmentation.data import ScaleCropPad

    photos = _photos()
    for scale in ((0.0, 1.0), (2.0, 1.0), (-1.0, -0.5)):
        with pytest.raises(ValueError, match="0 < low <= high"):
            ScaleCropPad(photos, size=8, scale=scale)
    for longer_side in (0, 2.5, True):
        with pytest.raises(ValueError, match="longer_side must be a positive"):
            ScaleCropPad(photos, size=8, longer_side=longer_side)
    with pytest.raises(ValueError, match="size must be a positive"):
        ScaleCropPad(photos, size=0)
    with pytest.raises(ValueError, match="seed must be a non-negative"):
        ScaleCropPad(photos, size=8, seed=-3)
    raw = _PairList([torch.zeros(3, 10, 10, dtype=torch.uint8)], [torch.zeros(10, 10, dtype=torch.int64)])
    with pytest.raises(ValueError, match=r"image.float\(\) / 255"):
        ScaleCropPad(raw, size=8)[0]
    mismatched = _PairList([torch.zeros(3, 10, 10)], [torch.zeros(10, 12, dtype=torch.int64)])
    with pytest.raises(ValueError, match="differ in size"):
        ScaleCropPad(mismatched, size=8)[0]
