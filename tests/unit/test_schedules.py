"""Learning-rate schedule values at given epochs and steps."""

from __future__ import annotations

import math

import pytest

from pipeline.training.schedules import exp_decay, schedule_function, step_decay, time_decay, warm_restarts


def test_time_decay_is_the_classic_formula():
    assert time_decay(0, 0.1, 0.0016) == 0.1
    assert time_decay(625, 0.1, 0.0016) == pytest.approx(0.05)
    assert time_decay(1000, 0.1, 0.0016) == pytest.approx(0.1 / 2.6)


def test_exponential_decay_matches_the_tutorial():
    assert exp_decay(0, 0.1, k=0.1) == 0.1
    assert exp_decay(10, 0.1, k=0.1) == pytest.approx(0.1 * math.exp(-1))
    assert exp_decay(3, 0.2, k=0.5) == pytest.approx(0.2 * math.exp(-1.5))


def test_step_decay_halves_every_ten_epochs():
    values = [step_decay(epoch, 0.08, drop=0.5, epochs_drop=10) for epoch in (0, 9, 10, 19, 20, 35)]
    assert values == pytest.approx([0.08, 0.08, 0.04, 0.04, 0.02, 0.01])


def test_warm_restarts_anneal_then_restart():
    rates = [warm_restarts(e, 1.0, period=4, min_lr=0.0) for e in range(9)]
    assert rates[0] == 1.0 and rates[4] == 1.0 and rates[8] == 1.0  # restarts
    assert rates[2] == pytest.approx(0.5) and rates[1] > rates[2] > rates[3]
    # Growing periods: cycles of 2, 4, 8 epochs start at epochs 0, 2, 6, 14.
    growing = [warm_restarts(e, 1.0, period=2, period_mult=2.0) for e in range(15)]
    assert [e for e, r in enumerate(growing) if r == 1.0] == [0, 2, 6, 14]
    assert warm_restarts(1, 1.0, period=2, min_lr=0.2) == pytest.approx(0.6)


def test_schedule_function_by_name():
    assert schedule_function("step", 1.0, drop=0.1, epochs_drop=1)(2) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        schedule_function("cyclic", 1.0)
