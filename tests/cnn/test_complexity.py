"""Parameter, FLOP and latency counting, checked against formulas."""

import pytest
import torch
from torch import nn

from companion.cnn.complexity import count_flops, count_multiply_adds, count_parameters, cpu_latency


def test_conv_flops_match_the_formula():
    conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
    # output 8 x 16 x 16; each output value needs 3*3*3 multiply-adds
    expected_macs = 8 * 16 * 16 * 3 * 3 * 3
    assert count_multiply_adds(conv, (3, 32, 32)) == expected_macs
    assert count_flops(conv, (3, 32, 32), batch_size=4) == 2 * 4 * expected_macs


def test_grouped_and_linear_flops():
    depthwise = nn.Conv2d(6, 6, kernel_size=3, padding=1, groups=6)
    assert count_multiply_adds(depthwise, (6, 10, 10)) == 6 * 10 * 10 * 9
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    assert count_multiply_adds(mlp, (3, 2, 2)) == 12 * 5


def test_parameters_counted_once_and_trainable_only():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(4, 2, bias=False))
    assert count_parameters(model) == 20 + 8
    model[3].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 20


def test_counting_restores_training_mode():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).train()
    count_flops(model, (1, 8, 8))
    assert model.training
    assert cpu_latency(model, (1, 8, 8), repeats=2, warmup=0) > 0
    assert model.training


@pytest.mark.parametrize("shape", [(32, 32), (1, 3, 32, 32), (3, 0, 8)])
def test_bad_input_shape_is_clear(shape):
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        count_flops(nn.Conv2d(3, 3, 1), shape)


def test_bad_repeats_is_clear():
    with pytest.raises(ValueError, match="repeats=0"):
        cpu_latency(nn.Conv2d(3, 3, 1), (3, 8, 8), repeats=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        count_flops(nn.Conv2d(3, 3, 1), (3, 8, 8), batch_size=0)
