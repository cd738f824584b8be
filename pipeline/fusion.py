"""Fused searches: scikit-learn's searches, with candidates that can share a program trained together.

The design keeps scikit-learn's orchestration whole. `FusingSearch` (mixed into Grid, Randomized
and both halving searches) wraps `evaluate_candidates`: before scikit-learn fits a batch of
candidates, the candidates that differ only inside the model (see `pipeline.towers`) are grouped
per fold, each group is trained once as towers of one model, and every tower's fit is written to
the journal as the record a solo fit would have written. scikit-learn then runs its usual loop,
and every fused fit is *replayed* from the journal (the resume mechanism), so cv_results, ranking,
halving rounds, resume and failure handling work unchanged. Candidates that cannot be fused
(early stopping or checkpoints, which act per fit; a group of one; fusing off) train alone: in
scikit-learn's loop locally, or as jobs of their own on a cluster (`pipeline.cluster`), so that
every record comes back to the search's process and its journal.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .estimator import TrainingDiverged, _plain_params, _spend_new_fits, divergence, params_key, routed
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
    `max_towers` caps a group (1 turns fusing off); `group_jobs` is the number of local worker
    processes; `runner` (e.g. `pipeline.cluster.DaskRunner`) replaces them, and then every fit,
    fused or not, is trained by it (`runner.trains_everything`), scikit-learn only replaying."""

    max_towers: int = 16
    group_jobs: int = 1
    runner = None

    def fit(self, X, y=None, **params):
        self._fit_data = (X, y)
        try:
            return super().fit(X, y, **params)
        finally:
            del self._fit_data

    def _run_search(self, evaluate_candidates, *, callback_ctx=None):
        def evaluate_fused_first(candidate_params, cv=None, more_results=None, **kwargs):
            candidate_params = list(candidate_params)
            if self.max_towers > 1 or self.runner is not None:
                train_groups(self.estimator, candidate_params, cv or self.cv, *self._fit_data, scorer=self.scoring,
                             max_towers=self.max_towers, runner=self.runner or LocalRunner(self.group_jobs))
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
                 runner: "LocalRunner") -> int:
    """Train, fold by fold, every candidate not yet journaled that `runner` takes on: groups of two
    or more fusable candidates, and with `runner.trains_everything` single candidates too. Records
    are journaled here, in the search's process, as jobs finish, wherever they trained. Returns the
    fits journaled. `scorer` is the search's `JournalScorer`."""
    from .callbacks import raise_if_stop_requested
    from .estimator import RecycleWorker

    X, y = np.asarray(X), np.asarray(y)
    jobs = _plan_jobs(estimator, candidate_params, cv, X, y, max_towers, singles=runner.trains_everything)
    allowed = []
    for job in jobs:  # the process's fit budget: a group is never split, so it may overdraw by one group
        try:
            _spend_new_fits(len(job.candidates))
        except RecycleWorker:
            break
        allowed.append(job)
    journaled = 0
    for job, records in runner.run(allowed, X, y, scorer):
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


def _plan_jobs(estimator, candidate_params, cv, X, y, max_towers: int, singles: bool) -> list[GroupJob]:
    """The jobs of one `evaluate_candidates` call, fold by fold: fusable candidates in chunks of at
    most `max_towers`; with `singles`, also one job per candidate that trains alone."""
    from sklearn.base import clone

    index = journal_index(estimator.journal_path)
    groups: dict[str, list[tuple[str, Any]]] = {}
    seen = set()
    for number, params in enumerate(candidate_params):
        candidate = clone(estimator).set_params(**params)
        key = params_key(_plain_params(candidate.get_params()))
        if key in seen:  # e.g. a random search drawing the same point twice: trained once, replayed twice
            continue
        seen.add(key)
        group = tower_group_key(candidate) if max_towers > 1 else None
        groups.setdefault(group or f"alone-{number}", []).append((key, candidate))
    jobs = []
    for train, test in cv.split(X, y):
        fold = data_key(X[train], y[train])
        for members in groups.values():
            pending = [(key, candidate) for key, candidate in members if index.lookup(key, fold) is None]
            for start in range(0, len(pending), max_towers):
                chunk = pending[start:start + max_towers]
                if len(chunk) > 1 or (chunk and singles):
                    jobs.append(GroupJob([k for k, _ in chunk], [c for _, c in chunk], train, test, fold))
    return jobs


class LocalRunner:
    """Runs jobs here or in joblib worker processes (the data memory-mapped to them once).

    A worker's start-up (loading TensorFlow, ~5 s) costs about as much as training one group, so
    there are never more workers than half the jobs: 3 jobs train here, 4 or more in 2 workers.
    Measured on 2 cores: 6 jobs 48 s in 2 workers against 59 s here; 3 jobs 22 s against 21 s.
    Single candidates are left to scikit-learn's own loop (`trains_everything` is False)."""

    trains_everything = False

    def __init__(self, n_jobs: int = 1):
        self.n_jobs = n_jobs

    def run(self, jobs: list[GroupJob], X, y, scorer) -> Iterator[tuple[GroupJob, list[dict[str, Any]]]]:
        workers = min(self.n_jobs, len(jobs) // 2)
        if workers <= 1:
            return ((job, train_group(job, X, y, scorer)) for job in jobs)
        from joblib import Parallel, delayed

        from ._tf import THREADS_VARIABLE

        # Workers are new interpreters: TensorFlow reads its thread counts there when it loads.
        os.environ[THREADS_VARIABLE] = str(threads_per_worker(workers))
        results = Parallel(n_jobs=workers, return_as="generator")(
            delayed(_train_in_worker)(job, X, y, scorer) for job in jobs)
        return zip(jobs, results)


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
    """Train one job's candidates, as towers of one model when there are several; one journal
    record per candidate. If the fused program as a whole fails, each candidate trains alone,
    so that each failure is recorded with its own reason."""
    from .callbacks import make_callbacks
    from .towers import fit_towers

    X_train, y_train, X_test, y_test = X[job.train], y[job.train], X[job.test], y[job.test]
    if len(job.candidates) == 1:
        return [train_alone(job.keys[0], job.candidates[0], job.fold, X_train, y_train, X_test, y_test, scorer)]
    first = job.candidates[0]
    params = first.get_params()
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
        return [train_alone(key, candidate, job.fold, X_train, y_train, X_test, y_test, scorer)
                for key, candidate in zip(job.keys, job.candidates)]
    fit_time = (time.perf_counter() - started) / len(job.candidates)
    group = params_key({"fold": job.fold, "members": job.keys})
    records = []
    for tower, (key, candidate) in enumerate(zip(job.keys, job.candidates)):
        history = fitted.histories[tower]
        diverged = divergence(history.get("loss", []))
        failure = f"{TrainingDiverged.__name__}: {diverged}" if diverged else None  # as a solo fit reports it
        record = _record(key, candidate, job.fold, failure, fit_time, history)
        record["fused"] = {"group": group, "towers": len(job.candidates)}
        if not record["error"]:
            _add_scores(record, scorer, fitted.view(tower), X_train, y_train, X_test, y_test)
        records.append(record)
    return records


def train_alone(key: str, candidate, fold: str, X_train, y_train, X_test, y_test, scorer) -> dict[str, Any]:
    """Train one candidate by itself (its estimator, not journaling) and return its journal record."""
    from sklearn.base import clone

    from .estimator import CandidateFailed

    estimator = clone(candidate).set_params(journal_path=None)
    started = time.perf_counter()
    try:
        estimator.fit(X_train, y_train)
        failure = None
    except CandidateFailed as error:
        failure = str(error)
    history = {k: [float(v) for v in values] for k, values in getattr(estimator, "history_", {}).items()}
    record = _record(key, candidate, fold, failure, time.perf_counter() - started, history if not failure else {})
    if not failure:
        _add_scores(record, scorer, estimator, X_train, y_train, X_test, y_test)
    return record


def _record(key: str, candidate, fold: str, failure: str | None, fit_time: float, history) -> dict[str, Any]:
    return {"key": key, "fold": fold, "params": _plain_params(candidate.get_params()), "error": failure,
            "fit_time": fit_time, "rss_mb": resident_mb(), "history": history, "pid": os.getpid()}


def _add_scores(record: dict[str, Any], scorer, fitted, X_train, y_train, X_test, y_test) -> None:
    record["test_scores"] = scorer.scores(fitted, X_test, y_test)
    if scorer.train_scores:
        record["train_scores"] = scorer.scores(fitted, X_train, y_train)
