"""One search's training: its fit store, training context, fit budget and runner, and the search
mixin that trains every pending fit before scikit-learn's loop replays it.

`TrainFirst` takes over `_run_search`: each time scikit-learn's strategy asks to evaluate a
batch of candidates (once for grid and random, once per round for halving), the session first
trains every fit of that batch that the store has no record of (fused where possible, on the
session's runner), writes the records, and only then lets scikit-learn's own loop run, in
which every fit is a replay. So cv_results, ranking, halving rounds and resume are
scikit-learn's, and every record is written by the process that holds the run.

Failures: a candidate failure is a record (and `max_consecutive_failures` of them in a row
abort the search); an infrastructure failure is logged to `incidents.jsonl`, its job retried
(`attempts` in all), and then the run stops with `InfrastructureStop`, to be resumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import RunFailed
from .continuations import TowerStates, continuation_key
from .engine import Trained, plan_jobs
from .records import InfrastructureFailure, resident_mb
from .store import JOURNAL_NAME, FitStore, log_incident


class SearchAborted(BaseException):
    """Too many candidates failed in a row. A BaseException, so scikit-learn's per-fit
    `except Exception` lets it through and the run stops."""


class EveryCandidateFailed(RunFailed):
    """The search finished but no candidate has a score: the run is recorded as failed, with its report."""


class InfrastructureStop(BaseException):
    """Fits kept failing for reasons outside the candidates (memory, disk, workers): stop, resumable."""


class RecycleWorker(BaseException):
    """This process has trained its quota of fits; a fresh process continues from the journal.
    TensorFlow leaks memory with every traced training function that no session clearing frees,
    so long searches train in a series of short-lived processes (`pipeline.tuning.supervisor`)."""


class FitBudget:
    """How many new fits this process may still train, and how much its memory may grow over its
    size after the first job (when TensorFlow and the data are loaded). None = no limit."""

    def __init__(self, fits: int | None = None, memory_growth: float | None = None):
        self.fits_left, self.memory_growth = fits, memory_growth
        self.baseline_mb: float | None = None

    def allows(self, count: int) -> bool:
        """Spend `count` fits if any are left (a job is never split, so the last may overdraw)."""
        if self.fits_left is None:
            return True
        if self.fits_left <= 0:
            return False
        self.fits_left -= count
        return True

    def memory_exceeded(self) -> bool:
        """Checked after each job: the first sets the baseline."""
        if not self.memory_growth:
            return False
        rss = resident_mb()
        if self.baseline_mb is None:
            self.baseline_mb = rss
            return False
        return rss > self.baseline_mb * (1 + self.memory_growth)


class SearchSession:
    """The state of one search in this process; nothing of it is global, so searches never share it."""

    def __init__(self, run_dir: str | Path, *, context, runner, max_towers: int = 24,
                 max_consecutive_failures: int | None = None, budget: FitBudget | None = None, attempts: int = 3,
                 continue_rounds: bool = False):
        self.run_dir = Path(run_dir)
        self.store = FitStore(self.run_dir / JOURNAL_NAME)
        # halving over epochs, fused: a round's survivors continue from where they stopped
        self.states = TowerStates(self.run_dir) if continue_rounds and max_towers > 1 else None
        self.context, self.runner, self.max_towers = context, runner, max_towers
        self.max_consecutive_failures = max_consecutive_failures
        self.budget = budget or FitBudget()
        self.attempts = attempts

    def train_pending(self, estimator, candidate_params: list[dict[str, Any]], cv, X, y, scorer) -> None:
        """Train and record every fit of these candidates not yet in the store."""
        import numpy as np

        X, y = np.asarray(X), np.asarray(y)
        jobs = plan_jobs(estimator, candidate_params, cv, X, y, self.store, self.max_towers, self.states,
                         self.runner.trainers)
        allowed = [job for job in jobs if self.budget.allows(job.size)]
        pending = allowed
        for attempt in range(1, self.attempts + 1):
            lost = []
            for job, outcome in self.runner.run(pending, X, y, scorer, self.context):
                if isinstance(outcome, BaseException):
                    log_incident(self.run_dir, f"a job of {job.size} fit(s) was lost (attempt {attempt} of "
                                 f"{self.attempts})", outcome, keys=job.keys, folds=[fold.key for fold in job.folds])
                    lost.append(job)
                    continue
                self._record(outcome)
                if self.budget.memory_exceeded():
                    raise RecycleWorker
                self.context.stop.raise_if_requested()
            if not lost:
                break
            pending = lost
        else:
            raise InfrastructureStop(f"{len(lost)} job(s) failed {self.attempts} times for reasons outside the "
                                     f"candidates (see {self.run_dir / 'incidents.jsonl'})")
        if len(allowed) < len(jobs):
            raise RecycleWorker

    def _record(self, trained: Trained) -> None:
        for (key, fold), state in trained.states.items():  # before the records: a record means its state is kept
            try:
                self.states.add(key, fold, state)
            except OSError as error:
                raise InfrastructureStop(f"cannot keep a fit's state for the next round: {error}") from None
        records = trained.records
        for record in records:
            try:
                self.store.append(record)
            except InfrastructureFailure as error:  # no incident log: the disk is most likely full
                raise InfrastructureStop(str(error)) from None
        limit = self.max_consecutive_failures
        if limit and self.store.trailing_failures() >= limit:
            raise SearchAborted(f"{limit} fits in a row failed, the last with {records[-1].reason}")


class TrainFirst:
    """Search mixin: before scikit-learn evaluates a batch of candidates, `session` trains what
    the store lacks; scikit-learn's loop then replays every fit (the estimator's `replay_from`)."""

    session: SearchSession

    def fit(self, X, y=None, **params):
        self._fit_data = (X, y)
        try:
            return super().fit(X, y, **params)
        finally:
            del self._fit_data

    def _run_search(self, evaluate_candidates, *, callback_ctx=None):
        def train_then_replay(candidate_params, cv=None, more_results=None, **kwargs):
            candidate_params = list(candidate_params)
            self.session.train_pending(self.estimator, candidate_params, cv or self.cv, *self._fit_data, self.scoring)
            return evaluate_candidates(candidate_params, cv, more_results, **kwargs)

        # scikit-learn >= 1.9 passes a callback context through _run_search; older versions do not
        super()._run_search(train_then_replay, **({"callback_ctx": callback_ctx} if callback_ctx is not None else {}))

    def _continuation(self, params: dict[str, Any]) -> str:
        from sklearn.base import clone

        return continuation_key(clone(self.estimator).set_params(**params).get_params())

    def kept_states(self, params: dict[str, Any], epochs: int) -> int:
        """How many folds of candidate `params` have a state after `epochs` (`pipeline.tuning.pbt`)."""
        return len(self.session.states.kept(self._continuation(params), epochs)) if self.session.states else 0

    def copy_states(self, source: dict[str, Any], target: dict[str, Any], epochs: int) -> None:
        """Candidate `target` continues from the states of `source` after `epochs` (PBT's exploit step)."""
        if self.session.states is not None:
            self.session.states.copy(self._continuation(source), self._continuation(target), epochs)

    def batch_done(self) -> None:
        """A batch of a pruned search has passed all its rungs: the states its fits kept to
        continue from are not needed again (`pipeline.tuning.pruning.BatchedSearch`)."""
        if self.session.states is not None:
            self.session.states.clear()
        super().batch_done()
