"""How fused jobs are split and shared between the processes that train at once."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from pipeline.tuning.engine import Fold, Job, _split_for, assign, makespan
from pipeline.tuning.runners import _away


def job(epochs: list[int], batch_size: int = 128, folds: int = 3, samples: int = 5333, starts=None) -> Job:
    candidates = [SimpleNamespace(epochs=e, batch_size=batch_size, validation_split=0.1) for e in epochs]
    return Job([f"c{n}" for n in range(len(epochs))], candidates,
               [Fold(np.arange(samples), np.arange(10), f"f{n}") for n in range(folds)], starts=starts or {})


def test_one_grid_program_is_halved_for_two_trainers_and_kept_whole_for_one():
    grid = job([10] * 8)  # the default grid: 8 candidates x 3 folds
    assert _split_for(1, [grid]) == [grid]
    halves = _split_for(2, [grid])
    assert [part.keys for part in halves] == [["c0", "c1", "c2", "c3"], ["c4", "c5", "c6", "c7"]]
    assert all(part.size == 12 and part.folds == grid.folds for part in halves)
    assert makespan(halves, 2) < makespan([grid], 2) == grid.cost()


def test_a_split_stops_when_it_no_longer_shortens_the_longest_trainer():
    """Every trainer gets a job, but a third program for two trainers costs another tracing and
    shortens nothing: two 12-tower halves are not split again, nor a job of one fit."""
    assert len(_split_for(2, [job([10] * 8)])) == 2
    assert [part.keys for part in _split_for(4, [job([10] * 8)])] == [["c0", "c1"], ["c2", "c3"], ["c4", "c5"],
                                                                    ["c6", "c7"]]
    single = job([10], folds=1)
    assert _split_for(2, [single]) == [single]


def test_one_candidate_alone_is_split_by_its_folds_with_their_states():
    """A pruned search's last survivor trains the most epochs on its own: its folds go to
    different trainers (one program of 1 fold, one of 2), each continuing from its own states."""
    starts = {("c0", f"f{f}"): SimpleNamespace(epochs=12) for f in range(3)}
    survivor = job([36], folds=3, starts=starts)
    parts = _split_for(2, [survivor])
    assert [[fold.key for fold in part.folds] for part in parts] == [["f0"], ["f1", "f2"]]
    for part in parts:
        assert part.keys == ["c0"] and set(part.starts) == {(key, fold.key) for fold, key, _ in part.fits()}
    assert makespan(parts, 2) < makespan([survivor], 2)
    assert _split_for(1, [survivor]) == [survivor]


def test_candidates_split_by_epochs_so_each_part_trains_its_own_length():
    mixed = job([10, 5, 10, 5, 10, 5], batch_size=64)
    short, long = _split_for(2, [mixed, job([10] * 6), job([10] * 6, batch_size=256)])[:2]
    assert [c.epochs for c in short.candidates] == [5, 5, 5] and short.keys == ["c1", "c3", "c5"]
    assert [c.epochs for c in long.candidates] == [10, 10, 10] and long.keys == ["c0", "c2", "c4"]
    assert short.cost() < long.cost()


def test_a_split_continuation_keeps_each_candidates_states():
    starts = {(f"c{n}", f"f{f}"): SimpleNamespace(epochs=3) for n in range(4) for f in range(3)}
    continued = job([9] * 4, starts=starts)
    parts = _split_for(2, [continued])
    assert len(parts) == 2
    for part in parts:
        assert set(part.starts) == {(key, fold.key) for fold, key, _ in part.fits()}
    assert continued.cost() < job([9] * 4).cost()  # 6 epochs left, not 9


def test_jobs_go_costliest_first_to_the_trainer_with_least_work():
    jobs = [job([10] * 2), job([10] * 8), job([10] * 4), job([10] * 4)]
    assert assign(jobs, 1) == [0, 0, 0, 0]
    assert assign(jobs, 2) == [0, 0, 1, 1]  # 8 + 2 candidates here, 4 + 4 in the worker
    assert assign(jobs, 3) == [1, 0, 1, 2]
    assert [id(away) for away in _away(jobs, 2)] == [id(jobs[2]), id(jobs[3])]
    assert _away(jobs, 1) == []
