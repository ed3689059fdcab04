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
