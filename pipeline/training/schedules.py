"""Learning-rate schedules as plain functions of the epoch (or update step), free of TensorFlow.

The Keras side (`pipeline.callbacks`) wraps these in a `LearningRateScheduler`, so the
values tested here are exactly the values used in training.
"""

from __future__ import annotations

import math
from typing import Callable


def time_decay(step: int, lr0: float, decay: float) -> float:
    """Classic Keras time-based decay, per update: lr0 / (1 + decay * step)."""
    return lr0 / (1.0 + decay * step)


def exp_decay(epoch: int, lr0: float, k: float = 0.1) -> float:
    """The seed tutorial's exponential decay: lr0 * exp(-k * epoch)."""
    return lr0 * math.exp(-k * epoch)


def step_decay(epoch: int, lr0: float, drop: float = 0.5, epochs_drop: int = 10) -> float:
    """Multiply by `drop` every `epochs_drop` epochs (epochs 0..epochs_drop-1 use lr0)."""
    return lr0 * drop ** math.floor(epoch / epochs_drop)


def warm_restarts(epoch: int, lr0: float, period: int = 10, period_mult: float = 1.0, min_lr: float = 0.0) -> float:
    """Cosine annealing from lr0 to min_lr that restarts every `period` epochs (SGDR).

    With `period_mult` > 1 each cycle is that many times longer than the one before,
    the seed's "random restarts" exercise with growing periods.
    """
    cycle_start, length = 0, float(period)
    while epoch >= cycle_start + length:
        cycle_start += length
        length *= period_mult
    progress = (epoch - cycle_start) / length
    return min_lr + 0.5 * (lr0 - min_lr) * (1.0 + math.cos(math.pi * progress))


_SCHEDULES: dict[str, Callable[..., float]] = {
    "exponential": exp_decay,
    "step": step_decay,
    "warm_restarts": warm_restarts,
}


def schedule_function(name: str, lr0: float, **params: float) -> Callable[[int], float]:
    """`epoch -> learning rate` for a named schedule ('exponential', 'step', 'warm_restarts')."""
    try:
        schedule = _SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown learning-rate schedule {name!r}; choose one of {', '.join(_SCHEDULES)}") from None
    return lambda epoch: schedule(epoch, lr0, **params)
