"""Transfer learning helpers: head replacement, freezing (with frozen batch norm), layer-wise rates."""

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock
from torchvision.ops import FrozenBatchNorm2d

from companion.cnn.transfer import (RESNET_STAGES, default_stages, find_classifier, freeze,
                                    parameter_groups, replace_head, trainable_parameters, unfreeze)


def _block(in_channels, out_channels, stride=1):
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                   nn.BatchNorm2d(out_channels))
    return nn.Sequential(BasicBlock(in_channels, out_channels, stride, downsample))


class TinyResNet(nn.Module):
    """torchvision's ResNet module tree (conv1, bn1, layer1..layer4, fc) at a tiny width."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _block(4, 4)
        self.layer2 = _block(4, 8, 2)
        self.layer3 = _block(8, 8, 2)
        self.layer4 = _block(8, 16, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _resnet():
    torch.manual_seed(0)
    model = TinyResNet()
    # non-trivial batch-norm statistics and affine parameters
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


@pytest.mark.parametrize("builder, head_name, in_features", [
    (torchvision.models.resnet18, "fc", 512),
    (torchvision.models.vgg11, "classifier.6", 4096),
    (torchvision.models.alexnet, "classifier.6", 4096),
    (torchvision.models.mobilenet_v2, "classifier.1", 1280),
    (torchvision.models.densenet121, "classifier", 1024),
])
def test_find_and_replace_head(builder, head_name, in_features):
    with torch.device("meta"):  # the module tree without allocating or initialising weights
        model = builder(weights=None)
    name, layer = find_classifier(model)
    assert (name, layer.in_features, layer.out_features) == (head_name, in_features, 1000)
    others = {key: module for key, module in model.named_modules() if key != head_name}
    assert replace_head(model, 7) is model
    new = model.get_submodule(head_name)
    assert isinstance(new, nn.Linear) and new is not layer and new.weight.device.type == "meta"
    assert (new.in_features, new.out_features) == (in_features, 7)
    # every other module is the very same object
    assert all(model.get_submodule(key) is module for key, module in others.items()
               if not key.startswith(head_name + "."))


def test_replace_head_keeps_the_trunk_weights():
    model = _resnet()
    before = {key: value.clone() for key, value in model.state_dict().items()
              if not key.startswith("fc.")}
    replace_head(model, 3)
    after = model.state_dict()
    assert all(torch.equal(after[key], value) for key, value in before.items())
    assert after["fc.weight"].shape == (3, 16)


def test_replaced_resnet_head_gives_new_logits_and_same_features():
    model = _resnet().eval()
    x = torch.randn(2, 3, 16, 16)
    trunk_output = {}
    model.avgpool.register_forward_hook(lambda m, i, o: trunk_output.setdefault("before", o))
    model(x)
    replace_head(model, 5)
    model.avgpool._forward_hooks.clear()
    model.avgpool.register_forward_hook(lambda m, i, o: trunk_output.setdefault("after", o))
    logits = model(x)
    assert logits.shape == (2, 5)
    torch.testing.assert_close(trunk_output["after"], trunk_output["before"])
    expected = model.fc(torch.flatten(trunk_output["after"], 1))
    torch.testing.assert_close(logits, expected)


def test_replace_head_keeps_dtype_and_bias_setting():
    model = nn.Sequential()
    model.fc = nn.Linear(8, 3, bias=False, dtype=torch.float64)
    replace_head(model, 4)
    assert model.fc.bias is None and model.fc.weight.dtype == torch.float64


def test_no_head_is_a_clear_error():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten())
    with pytest.raises(ValueError, match="no final nn.Linear"):
        replace_head(model, 3)


@pytest.mark.parametrize("num_classes", [0, -2, 2.5, True])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        replace_head(_resnet(), num_classes)


def test_freeze_all_but_head():
    model = _resnet()
    frozen = freeze(model, except_="fc")
    trainable = [name for name, param in model.named_parameters() if param.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]
    assert "conv1.weight" in frozen and "fc.weight" not in frozen
    assert trainable_parameters(model) == 16 * 10 + 10
    # a training step through the frozen trunk gives gradients to the head only
    model.train()
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    assert model.fc.weight.grad is not None and model.conv1.weight.grad is None


def test_prefix_is_a_module_boundary():
    model = nn.Sequential()
    model.fc = nn.Linear(4, 4)
    model.fc2 = nn.Linear(4, 2)
    freeze(model, except_=["fc"])
    assert model.fc.weight.requires_grad and not model.fc2.weight.requires_grad


def test_frozen_batchnorm_is_constant_in_train_mode_and_equals_eval_batchnorm():
    model = _resnet()
    x = torch.randn(4, 3, 16, 16)
    model.eval()
    with torch.no_grad():
        expected = model(x)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    freeze(model, except_="fc")
    assert isinstance(model.bn1, FrozenBatchNorm2d)
    assert isinstance(model.layer3[0].downsample[1], FrozenBatchNorm2d)
    model.train()  # what fit() does every epoch
    with torch.no_grad():
        actual = model(x)
        model(x * 3 + 1)  # would move plain BatchNorm running statistics
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_freeze_batchnorm_off_keeps_batchnorm():
    model = _resnet()
    freeze(model, except_="fc", freeze_batchnorm=False)
    assert isinstance(model.bn1, nn.BatchNorm2d)
    assert not model.bn1.weight.requires_grad


def test_unfreeze_restores_batchnorm_and_gradients():
    model = _resnet()
    reference = _resnet().eval()
    freeze(model)
    assert trainable_parameters(model) == 0
    unfrozen = unfreeze(model, only=["layer4"])
    assert all(name.startswith("layer4.") for name in unfrozen) and unfrozen
    assert isinstance(model.layer4[0].bn1, nn.BatchNorm2d)
    assert isinstance(model.layer3[0].bn1, FrozenBatchNorm2d)
    unfreeze(model)
    assert trainable_parameters(model) == sum(p.numel() for p in reference.parameters())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    # the round trip keeps every weight and statistic (num_batches_tracked restarts at zero)
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)


def test_unknown_prefix_is_a_clear_error():
    with pytest.raises(ValueError, match="not modules of TinyResNet"):
        freeze(_resnet(), except_="head")
    with pytest.raises(ValueError, match="not modules of TinyResNet"):
        unfreeze(_resnet(), only="layer5")


def test_resnet_stages_and_discriminative_rates():
    with torch.device("meta"):
        assert default_stages(torchvision.models.resnet18()) == RESNET_STAGES
    model = _resnet()
    assert default_stages(model) == RESNET_STAGES
    groups = parameter_groups(model, base_lr=1e-2, decay=0.5)
    assert [group["name"] for group in groups] == ["conv1+bn1", "layer1", "layer2", "layer3",
                                                   "layer4", "fc"]
    rates = [group["lr"] for group in groups]
    assert rates == pytest.approx([1e-2 * 0.5 ** k for k in (5, 4, 3, 2, 1, 0)])
    # every parameter appears exactly once
    ids = [id(param) for group in groups for param in group["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    optimizer = torch.optim.SGD(groups, lr=1.0)
    assert [group["lr"] for group in optimizer.param_groups] == rates


def test_discriminative_rates_move_lower_stages_less():
    """One SGD step with lr_s on each stage equals plain SGD with the gradient scaled by lr_s."""
    model = _resnet()
    reference = _resnet()
    groups = parameter_groups(model, base_lr=0.1, decay=0.1)
    rate_of = {id(param): group["lr"] for group in groups for param in group["params"]}
    x = torch.randn(2, 3, 16, 16)
    for net in (model, reference):
        net(x).logsumexp(dim=1).sum().backward()
    torch.optim.SGD(groups, lr=123.0).step()
    with torch.no_grad():
        for param, ref in zip(model.parameters(), reference.parameters()):
            ref -= rate_of[id(param)] * ref.grad
            torch.testing.assert_close(param, ref)


def test_parameter_groups_skip_frozen_and_default_decay():
    model = _resnet()
    freeze(model, except_=["layer4", "fc"])
    groups = parameter_groups(model, base_lr=1.0)
    assert [group["name"] for group in groups] == ["layer4", "fc"]
    assert groups[0]["lr"] == pytest.approx(1 / 2.6)


def test_generic_stages_for_vgg_and_explicit_stages():
    with torch.device("meta"):
        vgg = torchvision.models.vgg11(weights=None)
    assert default_stages(vgg) == (("features",), ("classifier",))
    assert [group["lr"] for group in parameter_groups(vgg, 1.0, 0.5)] == [0.5, 1.0]
    groups = parameter_groups(vgg, 1.0, 0.5, stages=[["features.0", "features.3"],
                                                      ["features.6", "features.8", "features.11",
                                                       "features.13", "features.16",
                                                       "features.18"],
                                                      ["classifier"]])
    assert [(group["name"], group["lr"]) for group in groups] == [
        ("features.0+features.3", 0.25), ("features.6+features.8+features.11+features.13"
                                          "+features.16+features.18", 0.5), ("classifier", 1.0)]


def test_parameter_groups_errors():
    model = _resnet()
    with pytest.raises(ValueError, match="base_lr must be positive"):
        parameter_groups(model, 0.0)
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\]"):
        parameter_groups(model, 1e-3, decay=2.0)
    with pytest.raises(ValueError, match="belong to no stage"):
        parameter_groups(model, 1e-3, stages=[["layer4"], ["fc"]])
    with pytest.raises(ValueError, match="belongs to stages"):
        parameter_groups(model, 1e-3, stages=[["conv1", "bn1", "layer1", "layer2", "layer3"],
                                              ["layer3", "layer4"], ["fc"]])
    with pytest.raises(ValueError, match="not modules of TinyResNet"):
        parameter_groups(model, 1e-3, stages=[["stem"], ["fc"]])
