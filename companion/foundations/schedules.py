"""Learning-rate schedules as plain functions ``lr(step)``, and a scheduler that applies one.

Each function returns the learning rate to use at ``step`` (0 is the first step), in closed form,
so that it can be read, plotted and tested on its own. The ``torch.optim.lr_scheduler`` classes
compute the same values (StepLR, CosineAnnealingLR, LinearLR, OneCycleLR, CyclicLR; checked in
``tests/foundations/test_schedules.py``). :class:`ScheduleLR` turns any of them into a scheduler for
an optimizer, e.g. for ``companion.engine.fit(..., scheduler=...)``.

Taught in: book/01_foundations/07_optimizers.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LRScheduler


def _check_step(step: int) -> None:
    if step < 0:
        raise ValueError(f"step must be >= 0 (0 is the first step), got {step}.")


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}.")


def step_lr(step: int, *, base_lr: float, step_size: int, gamma: float = 0.1) -> float:
    """Step decay: multiply the rate by ``gamma`` every ``step_size`` steps (``StepLR``).

    Args:
        step: the step (or epoch) number, from 0.
        base_lr: the rate for the first ``step_size`` steps.
        step_size: steps between two decays.
        gamma: the factor applied at each decay.

    Returns:
        ``base_lr * gamma ** (step // step_size)``.
    """
    _check_step(step)
    _check_positive("step_size", step_size)
    return base_lr * gamma ** (step // step_size)


def cosine_lr(step: int, *, base_lr: float, total_steps: int, min_lr: float = 0.0) -> float:
    """Half a cosine from ``base_lr`` down to ``min_lr`` over ``total_steps`` steps
    (SGDR without restarts, Loshchilov & Hutter, 2017; ``CosineAnnealingLR(T_max=total_steps)``).

    Args:
        step: the step number, from 0; after ``total_steps`` the rate stays at ``min_lr``
            (``CosineAnnealingLR`` would climb back up along the cosine).
        base_lr: the rate at step 0.
        total_steps: the step at which the rate reaches ``min_lr``.
        min_lr: the final rate.

    Returns:
        ``min_lr + (base_lr - min_lr) (1 + cos(π step / total_steps)) / 2``.
    """
    _check_step(step)
    _check_positive("total_steps", total_steps)
    progress = min(step, total_steps) / total_steps  # in [0, 1]
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def linear_warmup_lr(step: int, *, base_lr: float, warmup_steps: int, start_factor: float = 1 / 3) -> float:
    """Linear warm-up from ``start_factor * base_lr`` to ``base_lr`` over ``warmup_steps`` steps,
    then constant (``LinearLR(start_factor, end_factor=1, total_iters=warmup_steps)``).

    Args:
        step: the step number, from 0.
        base_lr: the rate reached at the end of the warm-up.
        warmup_steps: length of the warm-up.
        start_factor: the rate at step 0 as a fraction of ``base_lr``, in (0, 1].

    Returns:
        The learning rate at ``step``.
    """
    _check_step(step)
    _check_positive("warmup_steps", warmup_steps)
    if not 0 < start_factor <= 1:
        raise ValueError(f"start_factor must be in (0, 1], got {start_factor}; a warm-up starts below "
                         "the base rate (start_factor=0 would make the first step do nothing).")
    progress = min(step, warmup_steps) / warmup_steps
    return base_lr * (start_factor + (1 - start_factor) * progress)


def warmup_cosine_lr(step: int, *, base_lr: float, warmup_steps: int, total_steps: int,
                     min_lr: float = 0.0, start_factor: float = 1 / 3) -> float:
    """Linear warm-up for ``warmup_steps`` steps, then a cosine decay to ``min_lr`` at ``total_steps``
    (``SequentialLR([LinearLR, CosineAnnealingLR], milestones=[warmup_steps])``).

    Args:
        step: the step number, from 0.
        base_lr: the peak rate, reached at ``warmup_steps``.
        warmup_steps: length of the warm-up (smaller than ``total_steps``).
        total_steps: the step at which the rate reaches ``min_lr``.
        min_lr: the final rate.
        start_factor: the rate at step 0 as a fraction of ``base_lr``.

    Returns:
        The learning rate at ``step``.
    """
    if not 0 < warmup_steps < total_steps:
        raise ValueError(f"need 0 < warmup_steps < total_steps, got warmup_steps={warmup_steps}, "
                         f"total_steps={total_steps}.")
    if step < warmup_steps:
        return linear_warmup_lr(step, base_lr=base_lr, warmup_steps=warmup_steps, start_factor=start_factor)
    return cosine_lr(step - warmup_steps, base_lr=base_lr, total_steps=total_steps - warmup_steps,
                     min_lr=min_lr)


def triangular_lr(step: int, *, base_lr: float, max_lr: float, step_size: int) -> float:
    """The triangular cyclical learning rate of Smith (2017) (``CyclicLR(mode="triangular")``).

    The rate climbs linearly from ``base_lr`` to ``max_lr`` in ``step_size`` steps, comes back down
    in as many, and repeats.

    Args:
        step: the iteration number, from 0.
        base_lr: the lower bound.
        max_lr: the upper bound.
        step_size: half a cycle, in steps.

    Returns:
        The learning rate at ``step``.
    """
    _check_step(step)
    _check_positive("step_size", step_size)
    cycle = math.floor(1 + step / (2 * step_size))  # which cycle, from 1
    x = abs(step / step_size - 2 * cycle + 1)  # 1 at both ends of a cycle, 0 at its peak
    return base_lr + (max_lr - base_lr) * max(0.0, 1 - x)


def one_cycle_lr(step: int, *, max_lr: float, total_steps: int, pct_start: float = 0.3,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, anneal: str = "cos",
                 three_phase: bool = False) -> float:
    """The one-cycle ("1cycle") policy of Smith & Topin (2019), as ``OneCycleLR`` computes it.

    The rate rises from ``max_lr / div_factor`` to ``max_lr`` during the first ``pct_start`` of the
    run, then falls to ``max_lr / (div_factor * final_div_factor)``, far below where it started.
    With ``three_phase=True`` (the paper's shape, with ``anneal="linear"``) it first comes back
    down symmetrically to the initial rate and only then falls further; with ``False`` (the
    default, fastai's variant) it anneals straight from the peak to the minimum.

    Args:
        step: the step number, from 0 to ``total_steps``.
        max_lr: the peak rate.
        total_steps: the length of the cycle.
        pct_start: the fraction of the steps spent increasing the rate.
        div_factor: ``max_lr`` divided by the initial rate.
        final_div_factor: the initial rate divided by the final one.
        anneal: ``"cos"`` (half-cosine ramps) or ``"linear"``.
        three_phase: add the symmetric descent back to the initial rate before the final fall.

    Returns:
        The learning rate at ``step``.
    """
    _check_step(step)
    if step > total_steps:
        raise ValueError(f"step {step} is past the end of the cycle (total_steps={total_steps}).")
    if not 0 < pct_start < 1 or pct_start * total_steps <= 1:
        raise ValueError(f"pct_start must be in (0, 1) and leave more than one step of warm-up, got "
                         f"pct_start={pct_start} with total_steps={total_steps}.")
    if anneal not in ("cos", "linear"):
        raise ValueError(f"anneal must be 'cos' or 'linear', got {anneal!r}.")
    initial_lr = max_lr / div_factor
    min_lr = initial_lr / final_div_factor
    # (last step of the phase, rate at its start, rate at its end); steps counted as OneCycleLR does
    peak = pct_start * total_steps - 1
    if three_phase:
        phases = [(peak, initial_lr, max_lr), (2 * peak, max_lr, initial_lr),
                  (total_steps - 1, initial_lr, min_lr)]
    else:
        phases = [(peak, initial_lr, max_lr), (total_steps - 1, max_lr, min_lr)]
    phase_start = 0.0
    for index, (phase_end, start_lr, end_lr) in enumerate(phases):
        if step <= phase_end or index == len(phases) - 1:
            fraction = (step - phase_start) / (phase_end - phase_start)  # 0 -> 1 through the phase
            if anneal == "linear":
                return start_lr + (end_lr - start_lr) * fraction
            return end_lr + (start_lr - end_lr) * (1 + math.cos(math.pi * fraction)) / 2
        phase_start = phase_end
    raise AssertionError("unreachable")


class ScheduleLR(LRScheduler):
    """Set every parameter group's learning rate to ``schedule(step)``.

    ``scheduler.step()`` advances ``step`` by one, as for every PyTorch scheduler; the optimizer's
    rate is ``schedule(0)`` right after construction.

    Args:
        optimizer: the optimizer whose ``lr`` is set.
        schedule: maps the step number (from 0) to a learning rate, e.g.
            ``functools.partial(cosine_lr, base_lr=0.1, total_steps=1000)``.
        last_epoch: the step to resume from (-1: start).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Callable[[int], float],
                 last_epoch: int = -1) -> None:
        self.schedule = schedule
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """The learning rate of every parameter group at the current step."""
        return [self.schedule(self.last_epoch) for _ in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """The scheduler's state without the schedule function (which may not pickle), as
        ``LambdaLR`` does; rebuild the scheduler with the same function before loading it."""
        return {key: value for key, value in super().state_dict().items() if key != "schedule"}
