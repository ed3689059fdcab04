"""Tests for companion/detection/rpn.py: equal to torchvision's RegionProposalNetwork, invariants, bad input."""

import pytest
import torch
from torchvision.models.detection import rpn as tv_rpn
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
from torchvision.models.detection.anchor_utils import (
    AnchorGenerator as TVAnchorGenerator,
)
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign

from companion.detection.anchors import AnchorGenerator
from companion.detection.rpn import (
    RegionProposalNetwork,
    RPNHead,
    assign_targets_to_anchors,
    flatten_head_outputs,
    sample_anchors,
)

CHANNELS = 8
# (sizes, aspect_ratios, feature sizes, pre_nms_top_n, post_nms_top_n, nms_thresh)
CONFIGS = [
    (((16, 32),), ((0.5, 1.0, 2.0),), [(16, 16)], 300, 100, 0.7),
    (((16,), (32,), (64,)), ((0.5, 1.0, 2.0),) * 3, [(16, 16), (8, 8), (4, 4)], 50, 40, 0.7),
    (((12, 24), (48,)), ((1.0,), (0.5, 2.0)), [(16, 16), (8, 8)], 1000, 1000, 0.5),
]


def make_pair(sizes, ratios, pre_nms_top_n, post_nms_top_n, nms_thresh, seed=0):
    """torchvision's RPN and ours with the same (large, random) head weights."""
    torch.manual_seed(seed)
    num_anchors = len(sizes[0]) * len(ratios[0])
    top_n = {"pre": {"training": pre_nms_top_n, "testing": pre_nms_top_n},
             "post": {"training": post_nms_top_n, "testing": post_nms_top_n}}
    theirs = tv_rpn.RegionProposalNetwork(TVAnchorGenerator(sizes, ratios), tv_rpn.RPNHead(CHANNELS, num_anchors),
                                          0.7, 0.3, 256, 0.5, top_n["pre"], top_n["post"], nms_thresh)
    for parameter in theirs.parameters():  # larger than the 0.01 init, so proposals spread out
        torch.nn.init.normal_(parameter, std=0.3)
    ours = RegionProposalNetwork(AnchorGenerator(sizes, ratios), RPNHead(CHANNELS, num_anchors),
                                 pre_nms_top_n=top_n["pre"], post_nms_top_n=top_n["post"], nms_thresh=nms_thresh)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def make_inputs(feature_sizes, seed=1):
    generator = torch.Generator().manual_seed(seed)
    images = ImageList(torch.rand(2, 3, 64, 64, generator=generator), [(60, 64), (64, 50)])
    features = {str(k): torch.randn(2, CHANNELS, h, w, generator=generator)
                for k, (h, w) in enumerate(feature_sizes)}
    targets = [{"boxes": torch.tensor([[5.0, 5.0, 30.0, 40.0], [20.0, 10.0, 60.0, 50.0]])},
               {"boxes": torch.tensor([[0.0, 0.0, 20.0, 20.0]])}]
    return images, features, targets


def test_state_dict_keys_match_torchvision():
    theirs = tv_rpn.RPNHead(CHANNELS, 3, conv_depth=2)
    ours = RPNHead(CHANNELS, 3, conv_depth=2)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    features = [torch.randn(2, CHANNELS, 5, 7)]
    for mine, reference in zip(ours(features), theirs(features)):
        torch.testing.assert_close(mine[0], reference[0], rtol=0, atol=0)


def test_flatten_matches_torchvision():
    generator = torch.Generator().manual_seed(0)
    objectness = [torch.randn(2, 3, 4, 5, generator=generator), torch.randn(2, 3, 2, 3, generator=generator)]
    deltas = [torch.randn(2, 12, 4, 5, generator=generator), torch.randn(2, 12, 2, 3, generator=generator)]
    flat_objectness, flat_deltas, per_level = flatten_head_outputs(objectness, deltas)
    reference_objectness, reference_deltas = tv_rpn.concat_box_prediction_layers(objectness, deltas)
    assert per_level == [60, 18]
    assert torch.equal(flat_objectness.reshape(-1, 1), reference_objectness)
    assert torch.equal(flat_deltas.reshape(-1, 4), reference_deltas)


@pytest.mark.parametrize("sizes, ratios, feature_sizes, pre_nms_top_n, post_nms_top_n, nms_thresh", CONFIGS)
def test_eval_proposals_equal_torchvision(sizes, ratios, feature_sizes, pre_nms_top_n, post_nms_top_n, nms_thresh):
    theirs, ours = make_pair(sizes, ratios, pre_nms_top_n, post_nms_top_n, nms_thresh)
    images, features, _ = make_inputs(feature_sizes)
    theirs.eval(), ours.eval()
    reference, reference_losses = theirs(images, features)
    proposals, losses = ours(images, features)
    assert losses == reference_losses == {}
    for mine, expected, (height, width) in zip(proposals, reference, images.image_sizes):
        assert mine.shape == expected.shape and mine.shape[0] <= post_nms_top_n
        torch.testing.assert_close(mine, expected, rtol=0, atol=1e-5)
        assert (mine[:, 0::2] <= width).all() and (mine[:, 1::2] <= height).all() and (mine >= 0).all()


@pytest.mark.parametrize("sizes, ratios, feature_sizes, pre_nms_top_n, post_nms_top_n, nms_thresh", CONFIGS[:2])
def test_training_losses_and_gradients_equal_torchvision_with_the_same_seed(
        sizes, ratios, feature_sizes, pre_nms_top_n, post_nms_top_n, nms_thresh):
    theirs, ours = make_pair(sizes, ratios, pre_nms_top_n, post_nms_top_n, nms_thresh)
    images, features, targets = make_inputs(feature_sizes)
    theirs.train(), ours.train()
    torch.manual_seed(5)
    reference_boxes, reference = theirs(images, features, targets)
    torch.manual_seed(5)
    proposals, losses = ours(images, features, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg"}
    for name in losses:
        torch.testing.assert_close(losses[name], reference[name], rtol=0, atol=1e-6)
    for mine, expected in zip(proposals, reference_boxes):
        torch.testing.assert_close(mine, expected, rtol=0, atol=1e-5)
    sum(reference.values()).backward()
    sum(losses.values()).backward()
    for (name, mine), expected in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(mine.grad, expected.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_image_without_objects_is_all_background():
    theirs, ours = make_pair(*CONFIGS[0][:2], *CONFIGS[0][3:])
    images, features, targets = make_inputs(CONFIGS[0][2])
    targets[1] = {"boxes": torch.zeros(0, 4)}
    anchors = ours.anchor_generator(images, list(features.values()))
    labels, matched = assign_targets_to_anchors(anchors, [t["boxes"] for t in targets], ours.proposal_matcher)
    reference_labels, reference_matched = theirs.assign_targets_to_anchors(anchors, targets)
    for mine, expected in zip(labels + matched, reference_labels + reference_matched):
        assert torch.equal(mine, expected)
    assert (labels[1] == 0).all()
    ours.train(), theirs.train()
    torch.manual_seed(3)
    _, reference = theirs(images, features, targets)
    torch.manual_seed(3)
    _, losses = ours(images, features, targets)
    for name in losses:
        assert torch.isfinite(losses[name])
        torch.testing.assert_close(losses[name], reference[name], rtol=0, atol=1e-6)


def test_sampling_matches_torchvision_and_respects_the_budget():
    generator = torch.Generator().manual_seed(0)
    labels = [torch.randint(-1, 2, (500,), generator=generator).float(),
              torch.cat([torch.ones(10), torch.zeros(40), -torch.ones(20)])]
    torch.manual_seed(7)
    positive, negative = sample_anchors(labels, 64, 0.5)
    torch.manual_seed(7)
    reference_positive, reference_negative = BalancedPositiveNegativeSampler(64, 0.5)(labels)
    assert torch.equal(positive, torch.where(torch.cat(reference_positive))[0])
    assert torch.equal(negative, torch.where(torch.cat(reference_negative))[0])
    all_labels = torch.cat(labels)
    assert (all_labels[positive] == 1).all() and (all_labels[negative] == 0).all()
    first = positive < 500
    assert first.sum() == 32 and (negative < 500).sum() == 32  # image 0: half positive
    assert (~first).sum() == 10 and (negative >= 500).sum() == 40  # image 1: too few of each


def test_drop_in_replacement_inside_torchvision_faster_rcnn():
    from torchvision.models.detection import FasterRCNN

    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, CHANNELS, 3, stride=4, padding=1), torch.nn.ReLU())
    backbone.out_channels = CHANNELS
    torch.manual_seed(0)
    model = FasterRCNN(backbone, num_classes=3, min_size=64, max_size=64,
                       rpn_anchor_generator=TVAnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),)),
                       box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
                       rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=50).eval()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = model(images)
        ours = RegionProposalNetwork(AnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),)), RPNHead(CHANNELS, 6),
                                     pre_nms_top_n={"training": 200, "testing": 200},
                                     post_nms_top_n={"training": 50, "testing": 50})
        ours.load_state_dict(model.rpn.state_dict())
        model.rpn = ours.eval()
        detections = model(images)
    for mine, expected in zip(detections, reference):
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(mine[key], expected[key], rtol=0, atol=1e-5)


def test_bad_input_raises_clear_errors():
    _, ours = make_pair(*CONFIGS[0][:2], *CONFIGS[0][3:])
    images, features, targets = make_inputs(CONFIGS[0][2])
    with pytest.raises(ValueError, match="images must be"):
        ours(torch.rand(3, 64, 64), features)
    with pytest.raises(ValueError, match="features must be"):
        ours(images, [torch.randn(3, CHANNELS, 16, 16)])
    with pytest.raises(ValueError, match="features must be"):
        ours(images, [])
    ours.train()
    with pytest.raises(ValueError, match="training mode"):
        ours(images, features)
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\]"):
        ours(images, features, [{"boxes": torch.tensor([[10.0, 10.0, 5.0, 20.0]])}, targets[1]])
    wrong_head = RegionProposalNetwork(AnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),)), RPNHead(CHANNELS, 3))
    with pytest.raises(ValueError, match="num_anchors"):
        wrong_head.eval()(images, features)
    with pytest.raises(ValueError, match="pre_nms_top_n"):
        RegionProposalNetwork(AnchorGenerator(), RPNHead(CHANNELS, 3), pre_nms_top_n={"testing": 10})
    with pytest.raises(ValueError, match="positive"):
        RPNHead(0, 3)
    with pytest.raises(ValueError, match="4 channels"):
        flatten_head_outputs([torch.randn(1, 3, 2, 2)], [torch.randn(1, 8, 2, 2)])
