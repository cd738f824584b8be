"""Fused searches: scikit-learn's searches, with candidates that can share a program trained together.

The design keeps scikit-learn's orchestration whole. `FusingSearch` (mixed into Grid, Randomized
and both halving searches) wraps `evaluate_candidates`: before scikit-learn fits a batch of
candidates, the candidates that differ only inside the model (see `pipeline.towers`) are grouped
per fold, each group is trained once as towers of one model, and every tower's fit is written to
the journal as the record a solo fit would have written. scikit-learn then runs its usual loop,
and every fused fit is *replayed* from the journal (the resume mechanism), so cv_results, ranking,
halving rounds, resume and failure handling work unchanged. Candidates that cannot be fused
(early stopping or checkpoints, which act per fit; a group of one; fusing off) train alone.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .estimator import _plain_params, _spend_new_fits, params_key, routed, training_failure
from .journal import append_record, data_key, journal_index, resident_mb

MODEL_PREFIX = "model__"


def tower_group_key(estimator) -> str | None:
    """What candidates must share to train as one program (all but the tower arguments), or None
    when this candidate must train alone."""
    from .towers import TOWER_ARGS

    if estimator.early_stopping or estimator.checkpoint:
        return None
    params = _plain_params(estimator.get_params())
    shared = {k: v for k, v in params.items() if not (k.startswith(MODEL_PREFIX) and k[len(MODEL_PREFIX):] in TOWER_ARGS)}
    shared["depth"] = len(params.get(f"{MODEL_PREFIX}hidden_layers") or ())  # towers differ in width, not depth
    return params_key(shared)


class FusingSearch:
    """Mixin for a scikit-learn search over a journaled `PipelineClassifier`/`PipelineRegressor`:
    trains the fusable candidates of every `evaluate_candidates` call in groups first.
    `max_towers` caps a group (1 turns fusing off)."""

    max_towers: int = 16
    group_jobs: int = 1  # worker processes for fused groups

    def fit(self, X, y=None, **params):
        self._fit_data = (X, y)
        try:
            return super().fit(X, y, **params)
        finally:
            del self._fit_data

    def _run_search(self, evaluate_candidates, *, callback_ctx=None):
        def evaluate_fused_first(candidate_params, cv=None, more_results=None, **kwargs):
            candidate_params = list(candidate_params)
            if self.max_towers > 1:
                train_groups(self.estimator, candidate_params, cv or self.cv, *self._fit_data,
                             scorer=self.scoring, max_towers=self.max_towers, n_jobs=self.group_jobs)
            return evaluate_candidates(candidate_params, cv, more_results, **kwargs)

        # scikit-learn >= 1.9 passes a callback context through _run_search; older versions do not
        extra = {"callback_ctx": callback_ctx} if callback_ctx is not None else {}
        super()._run_search(evaluate_fused_first, **extra)


def fusing(search_class: type) -> type:
    """`search_class` with `FusingSearch` mixed in (e.g. `fusing(GridSearchCV)`)."""
    return type(f"Fused{search_class.__name__}", (FusingSearch, search_class), {})


@dataclass
class GroupJob:
    """One fold of one group: the candidates (estimators with their params set) trained as towers."""

    keys: list[str]
    candidates: list[Any]
    train: np.ndarray
    test: np.ndarray
    fold: str


def train_groups(estimator, candidate_params: list[dict[str, Any]], cv, X, y, *, scorer, max_towers: int,
                 n_jobs: int = 1) -> int:
    """Train, fold by fold, every group of two or more fusable candidates not yet journaled, in
    `n_jobs` worker processes (joblib; the data is memory-mapped to them once). Records are
    journaled here, in the search's process, as each group finishes. Returns the fits journaled.
    `scorer` is the search's `JournalScorer`."""
    from .callbacks import raise_if_stop_requested
    from .estimator import RecycleWorker

    X, y = np.asarray(X), np.asarray(y)
    jobs = _plan_jobs(estimator, candidate_params, cv, X, y, max_towers)
    allowed = []
    for job in jobs:  # the process's fit budget: a group is never split, so it may overdraw by one group
        try:
            _spend_new_fits(len(job.candidates))
        except RecycleWorker:
            break
        allowed.append(job)
    journaled = 0
    for job, records in zip(allowed, _run_jobs(allowed, X, y, scorer, n_jobs)):
        for record in records:
            append_record(estimator.journal_path, record)
        journaled += len(records)
        failures = [r["error"] for r in records if r["error"]]
        if failures:
            job.candidates[0]._check_failure_streak(failures[-1])
        raise_if_stop_requested()
    if len(allowed) < len(jobs):
        raise RecycleWorker
    return journaled


def _plan_jobs(estimator, candidate_params, cv, X, y, max_towers: int) -> list[GroupJob]:
    from sklearn.base import clone

    index = journal_index(estimator.journal_path)
    groups: dict[str, list[tuple[str, Any]]] = {}
    for params in candidate_params:
        candidate = clone(estimator).set_params(**params)
        key = tower_group_key(candidate)
        if key is not None:
            groups.setdefault(key, []).append((params_key(_plain_params(candidate.get_params())), candidate))
    jobs = []
    for train, test in cv.split(X, y):
        fold = data_key(X[train], y[train])
        for members in groups.values():
            pending = [(key, candidate) for key, candidate in members if index.lookup(key, fold) is None]
            for start in range(0, len(pending), max_towers):
                chunk = pending[start:start + max_towers]
                if len(chunk) > 1:
                    jobs.append(GroupJob([k for k, _ in chunk], [c for _, c in chunk], train, test, fold))
    return jobs


def _run_jobs(jobs: list[GroupJob], X, y, scorer, n_jobs: int) -> Iterator[list[dict[str, Any]]]:
    """Each job's records, in job order: here, or in joblib worker processes.

    A worker's start-up (loading TensorFlow, ~5 s) costs about as much as training one group, so
    there are never more workers than half the jobs: 3 jobs train here, 4 or more in 2 workers.
    Measured on 2 cores: 6 jobs 48 s in 2 workers against 59 s here; 3 jobs 22 s against 21 s."""
    workers = min(n_jobs, len(jobs) // 2)
    if workers <= 1:
        return (train_group(job, X, y, scorer) for job in jobs)
    from joblib import Parallel, delayed

    from ._tf import THREADS_VARIABLE

    # Workers are new interpreters: TensorFlow reads its thread counts there when it loads.
    os.environ[THREADS_VARIABLE] = str(threads_per_worker(workers))
    return Parallel(n_jobs=workers, return_as="generator")(delayed(_train_in_worker)(job, X, y, scorer) for job in jobs)


def threads_per_worker(n_jobs: int) -> int:
    """TensorFlow threads for each of `n_jobs` workers, so that workers x threads <= cores."""
    return max(1, available_cores() // n_jobs)


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _train_in_worker(job: GroupJob, X, y, scorer) -> list[dict[str, Any]]:
    """`train_group` in a worker process. Ctrl-C reaches the whole process group; the search's own
    process handles it (stops after the groups under way), so workers ignore it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return train_group(job, X, y, scorer)


def train_group(job: GroupJob, X, y, scorer) -> list[dict[str, Any]]:
    """Train one job's candidates as towers of one model; one journal record per tower. If the
    program as a whole fails, no records: the candidates then train alone, where each failure
    is recorded with its own reason."""
    from .callbacks import make_callbacks
    from .towers import fit_towers

    first = job.candidates[0]
    params = first.get_params()
    X_train, y_train, X_test, y_test = X[job.train], y[job.train], X[job.test], y[job.test]
    started = time.perf_counter()
    try:
        fitted = fit_towers(
            [routed(c.get_params(), "model") for c in job.candidates], X_train, y_train,
            task="classification" if first._kind[0] == "classifier" else "regression",
            optimizer=first.optimizer, optimizer_args=routed(params, "optimizer"),
            epochs=first.epochs, batch_size=first.batch_size, validation_split=first.validation_split or 0.0,
            shuffle=first.shuffle, steps_per_execution=first.steps_per_execution, seed=first.random_state,
            callbacks=make_callbacks(lr_schedule=first.lr_schedule, schedule_params=routed(params, "lr_schedule"),
                                     terminate_on_nan=False),
        )
    except KeyboardInterrupt:
        raise
    except Exception:
        return []
    fit_time = (time.perf_counter() - started) / len(job.candidates)
    group = params_key({"fold": job.fold, "members": job.keys})
    records = []
    for tower, (key, candidate) in enumerate(zip(job.keys, job.candidates)):
        history = fitted.histories[tower]
        failure = training_failure(history.get("loss", []))
        record = {"key": key, "fold": job.fold, "params": _plain_params(candidate.get_params()),
                  "error": failure, "fit_time": fit_time, "rss_mb": resident_mb(), "history": history,
                  "fused": {"group": group, "towers": len(job.candidates)}, "pid": os.getpid()}
        if not failure:
            record["test_scores"] = scorer.scores(fitted.view(tower), X_test, y_test)
            if scorer.train_scores:
                record["train_scores"] = scorer.scores(fitted.view(tower), X_train, y_train)
        records.append(record)
    return records
