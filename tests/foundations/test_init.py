"""Our initialisers use torch.nn.init's fans, gains and bounds, and draw the very same values."""

import math

import pytest
import torch
from torch import nn

from companion.foundations.init import (activation_stds, calculate_gain, fan_in_and_fan_out, kaiming_normal_,
                                        kaiming_std, kaiming_uniform_, xavier_normal_, xavier_std,
                                        xavier_uniform_)

SHAPES = [(7, 5), (64, 32), (16, 8, 3, 3), (4, 6, 5), (3, 2, 2, 3, 3)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_equal_torch(shape):
    weight = torch.empty(shape)
    assert fan_in_and_fan_out(weight) == nn.init._calculate_fan_in_and_fan_out(weight)


@pytest.mark.parametrize("nonlinearity, param", [("linear", None), ("conv2d", None), ("sigmoid", None),
                                                 ("tanh", None), ("relu", None), ("leaky_relu", None),
                                                 ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5)),
                                                 ("selu", None)])
def test_gain_equals_torch(nonlinearity, param):
    assert calculate_gain(nonlinearity, param) == pytest.approx(nn.init.calculate_gain(nonlinearity, param),
                                                                rel=1e-15)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gain", [1.0, 5.0 / 3])
@pytest.mark.parametrize("ours, theirs", [(xavier_uniform_, nn.init.xavier_uniform_),
                                          (xavier_normal_, nn.init.xavier_normal_)])
def test_xavier_draws_the_same_values_as_torch(shape, gain, ours, theirs):
    expected = theirs(torch.empty(shape), gain=gain, generator=torch.Generator().manual_seed(3))
    got = ours(torch.empty(shape), gain=gain, generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, expected)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("a, mode, nonlinearity", [(0.0, "fan_in", "relu"), (0.0, "fan_out", "relu"),
                                                   (math.sqrt(5), "fan_in", "leaky_relu"),
                                                   (0.1, "fan_out", "leaky_relu"), (0.0, "fan_in", "tanh")])
@pytest.mark.parametrize("ours, theirs", [(kaiming_uniform_, nn.init.kaiming_uniform_),
                                          (kaiming_normal_, nn.init.kaiming_normal_)])
def test_kaiming_draws_the_same_values_as_torch(shape, a, mode, nonlinearity, ours, theirs):
    expected = theirs(torch.empty(shape), a=a, mode=mode, nonlinearity=nonlinearity,
                      generator=torch.Generator().manual_seed(4))
    got = ours(torch.empty(shape), a=a, mode=mode, nonlinearity=nonlinearity,
               generator=torch.Generator().manual_seed(4))
    assert torch.equal(got, expected)


def test_default_global_generator_matches_torch():
    torch.manual_seed(5)
    expected = nn.init.kaiming_normal_(torch.empty(10, 20), nonlinearity="relu")
    torch.manual_seed(5)
    assert torch.equal(kaiming_normal_(torch.empty(10, 20), nonlinearity="relu"), expected)


def test_statistics_match_the_formulas():
    generator = torch.Generator().manual_seed(0)
    weight = torch.empty(400, 600)
    std = math.sqrt(2.0 / (400 + 600))
    assert xavier_std(weight) == pytest.approx(std)
    bound = math.sqrt(6.0 / (400 + 600))
    uniform = xavier_uniform_(weight.clone(), generator=generator)
    assert uniform.abs().max() <= bound and uniform.abs().max() > 0.99 * bound
    assert uniform.std().item() == pytest.approx(std, rel=0.01)
    he = kaiming_normal_(weight.clone(), nonlinearity="relu", generator=generator)
    assert he.std().item() == pytest.approx(math.sqrt(2.0 / 600), rel=0.01)
    assert he.mean().abs().item() < 0.01 * math.sqrt(2.0 / 600) * 10
    assert kaiming_std(weight, mode="fan_out", nonlinearity="relu") == pytest.approx(math.sqrt(2.0 / 400))


def test_initialisers_work_in_place_on_parameters_without_recording_gradients():
    layer = nn.Linear(6, 4)
    result = kaiming_uniform_(layer.weight, nonlinearity="relu")
    assert result is layer.weight and result.grad_fn is None
    assert layer.weight.abs().max() <= math.sqrt(6.0 / 6)


def test_he_keeps_the_relu_signal_and_xavier_halves_its_second_moment():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(512, 256, generator=generator)
    he = [kaiming_normal_(torch.empty(256, 256), nonlinearity="relu", generator=generator) for _ in range(20)]
    xavier = [xavier_normal_(torch.empty(256, 256), generator=generator) for _ in range(20)]
    he_stds = activation_stds(inputs, he, torch.relu)
    xavier_stds = activation_stds(inputs, xavier, torch.relu)
    assert he_stds.shape == (20,)
    assert 0.3 < he_stds[-1] / he_stds[0] < 3
    ratio = (xavier_stds[-1] / xavier_stds[0]).item()  # about (1/sqrt(2))^19
    assert 0.2 * 2 ** -9.5 < ratio < 5 * 2 ** -9.5


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        xavier_uniform_(torch.empty(5))
    with pytest.raises(ValueError, match="fan_in"):
        kaiming_normal_(torch.empty(3, 3), mode="fan_middle")
    with pytest.raises(ValueError, match="unknown non-linearity"):
        calculate_gain("swish")
    with pytest.raises(ValueError, match="negative slope"):
        calculate_gain("leaky_relu", True)
    with pytest.raises(ValueError, match="flatten"):
        activation_stds(torch.zeros(2, 1, 28, 28), [torch.zeros(4, 784)], torch.relu)
    with pytest.raises(ValueError, match="layer 1"):
        activation_stds(torch.zeros(2, 8), [torch.zeros(4, 8), torch.zeros(4, 5)], torch.relu)
