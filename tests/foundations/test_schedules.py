"""Our learning-rate schedules give the same rates as torch.optim.lr_scheduler."""

import functools

import pytest
import torch
from torch.optim import lr_scheduler

from companion.foundations.schedules import (ScheduleLR, cosine_lr, linear_warmup_lr, one_cycle_lr,
                                             step_lr, triangular_lr, warmup_cosine_lr)

BASE_LR = 0.1


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()  # tiny tensors: extra threads only add synchronisation
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def torch_rates(make_scheduler, steps, lr=BASE_LR):
    """The learning rate an SGD optimizer uses at steps 0 .. steps-1 under a torch scheduler."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=lr, momentum=0.9)
    scheduler = make_scheduler(optimizer)
    rates = []
    for step in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if step < steps - 1:
            scheduler.step()
    return rates


def assert_same(ours, reference):
    assert len(ours) == len(reference)
    torch.testing.assert_close(torch.tensor(ours, dtype=torch.float64),
                               torch.tensor(reference, dtype=torch.float64), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("step_size, gamma", [(1, 0.5), (7, 0.1), (30, 0.3)])
def test_step_lr_equals_steplr(step_size, gamma):
    ours = [step_lr(t, base_lr=BASE_LR, step_size=step_size, gamma=gamma) for t in range(100)]
    assert_same(ours, torch_rates(lambda o: lr_scheduler.StepLR(o, step_size=step_size, gamma=gamma), 100))


@pytest.mark.parametrize("total_steps, min_lr", [(10, 0.0), (100, 1e-3), (37, 0.01)])
def test_cosine_lr_equals_cosine_annealing(total_steps, min_lr):
    ours = [cosine_lr(t, base_lr=BASE_LR, total_steps=total_steps, min_lr=min_lr) for t in range(total_steps + 1)]
    reference = torch_rates(lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=total_steps, eta_min=min_lr),
                            total_steps + 1)
    assert_same(ours, reference)
    assert cosine_lr(5 * total_steps, base_lr=BASE_LR, total_steps=total_steps, min_lr=min_lr) == min_lr


@pytest.mark.parametrize("warmup_steps, start_factor", [(5, 1 / 3), (20, 0.01), (1, 0.5)])
def test_linear_warmup_equals_linearlr(warmup_steps, start_factor):
    ours = [linear_warmup_lr(t, base_lr=BASE_LR, warmup_steps=warmup_steps, start_factor=start_factor)
            for t in range(50)]
    reference = torch_rates(lambda o: lr_scheduler.LinearLR(o, start_factor=start_factor, end_factor=1.0,
                                                            total_iters=warmup_steps), 50)
    assert_same(ours, reference)


def test_warmup_cosine_equals_sequential():
    def make(optimizer):
        warmup = lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=10)
        cosine = lr_scheduler.CosineAnnealingLR(optimizer, T_max=90, eta_min=1e-4)
        return lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[10])

    ours = [warmup_cosine_lr(t, base_lr=BASE_LR, warmup_steps=10, total_steps=100, min_lr=1e-4, start_factor=0.1)
            for t in range(101)]
    assert_same(ours, torch_rates(make, 101))


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("total_steps, pct_start", [(100, 0.3), (57, 0.25), (1000, 0.45)])
def test_one_cycle_equals_onecyclelr(three_phase, anneal, total_steps, pct_start):
    ours = [one_cycle_lr(t, max_lr=1.0, total_steps=total_steps, pct_start=pct_start, anneal=anneal,
                         three_phase=three_phase) for t in range(total_steps + 1)]
    reference = torch_rates(lambda o: lr_scheduler.OneCycleLR(o, max_lr=1.0, total_steps=total_steps,
                                                              pct_start=pct_start, anneal_strategy=anneal,
                                                              three_phase=three_phase), total_steps + 1)
    assert_same(ours, reference)


def test_one_cycle_shape():
    rates = [one_cycle_lr(t, max_lr=1.0, total_steps=100) for t in range(100)]
    assert rates[0] == pytest.approx(1.0 / 25)
    assert max(rates) == pytest.approx(1.0) and rates.index(max(rates)) == 29
    assert rates[-1] == pytest.approx(1.0 / 25 / 1e4)


@pytest.mark.parametrize("step_size", [1, 4, 25])
def test_triangular_equals_cycliclr(step_size):
    ours = [triangular_lr(t, base_lr=0.01, max_lr=0.1, step_size=step_size) for t in range(120)]
    reference = torch_rates(lambda o: lr_scheduler.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=step_size),
                            120)
    assert_same(ours, reference)
    assert ours[0] == ours[2 * step_size] == 0.01 and ours[step_size] == pytest.approx(0.1)


def test_schedule_lr_sets_every_group():
    schedule = functools.partial(one_cycle_lr, max_lr=0.5, total_steps=40)
    parameters = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": [parameters[0]]}, {"params": [parameters[1]], "lr": 3.0}], lr=1.0)
    scheduler = ScheduleLR(optimizer, schedule)
    for step in range(41):
        assert [group["lr"] for group in optimizer.param_groups] == [schedule(step)] * 2
        optimizer.step()
        if step < 40:
            scheduler.step()
    assert "schedule" not in scheduler.state_dict()


@pytest.mark.parametrize("call", [
    lambda: step_lr(-1, base_lr=0.1, step_size=3),
    lambda: step_lr(0, base_lr=0.1, step_size=0),
    lambda: cosine_lr(0, base_lr=0.1, total_steps=0),
    lambda: linear_warmup_lr(0, base_lr=0.1, warmup_steps=5, start_factor=0.0),
    lambda: warmup_cosine_lr(0, base_lr=0.1, warmup_steps=10, total_steps=10),
    lambda: one_cycle_lr(101, max_lr=1.0, total_steps=100),
    lambda: one_cycle_lr(0, max_lr=1.0, total_steps=100, pct_start=1.5),
    lambda: one_cycle_lr(0, max_lr=1.0, total_steps=100, anneal="exp"),
    lambda: triangular_lr(0, base_lr=0.01, max_lr=0.1, step_size=0),
])
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
