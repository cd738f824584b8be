"""Where jobs train: in the search's process, or in local worker processes (the Dask runner is in
`pipeline.tuning.cluster`).

A runner's `run(jobs, X, y, scorer, context)` yields `(job, trained)` as jobs finish (the
`Trained` records and states of `train_job`), or
`(job, error)` for a job lost to an infrastructure failure (out of memory, a killed worker),
which the session logs and retries; a candidate's own failure is already a record.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any, Iterator

from .engine import Job, train_job
from .records import is_infrastructure

Outcome = Iterator[tuple[Job, Any]]


class LocalRunner:
    """Trains here and, for four fused jobs or more, in worker processes too.

    This process takes every `n_jobs`-th fused job and the jobs of one candidate (reusing its
    compiled models); `n_jobs - 1` workers train the other fused jobs meanwhile, so that no
    more than `n_jobs` processes hold TensorFlow (each ~0.6 GB). A worker's start-up (loading
    TensorFlow, ~5 s) costs about as much as training one group, so there are never more
    trainers than half the fused jobs: 3 jobs train here, 4 or more here and in a worker."""

    def __init__(self, n_jobs: int = 1):
        self.n_jobs = n_jobs
        self.started_workers = False

    def run(self, jobs: list[Job], X, y, scorer, context) -> Outcome:
        fused = [job for job in jobs if job.size > 1]
        trainers = min(self.n_jobs, len(fused) // 2)
        away = [job for number, job in enumerate(fused) if trainers > 1 and number % trainers]
        here = [job for job in jobs if not any(job is other for other in away)]
        if not away:
            yield from _here(here, X, y, scorer, context)
            return
        self.started_workers = True
        workers = _Background(_in_workers(away, X, y, scorer, trainers - 1, max(1, available_cores() // trainers)))
        try:
            for outcome in _here(here, X, y, scorer, context):
                yield outcome
                yield from workers.finished()
            yield from workers.finished(wait=True)
        finally:
            if not workers.done:  # stopped early (Ctrl-C, a recycle, an error): the workers' jobs are dropped
                self.close(kill=True)
                workers.thread.join()

    def close(self, kill: bool = False) -> None:
        """End the worker processes, which joblib keeps for reuse: the search is over, and their
        memory is better freed before the best model is refitted here."""
        if self.started_workers:
            from joblib.externals.loky import get_reusable_executor

            get_reusable_executor(reuse=True).shutdown(wait=True, kill_workers=kill)
            self.started_workers = False


def _here(jobs: list[Job], X, y, scorer, context) -> Outcome:
    for job in jobs:
        try:
            trained = train_job(job, X, y, scorer, context)
        except Exception as error:
            if not is_infrastructure(error):
                raise
            yield job, error
            continue
        yield job, trained


class _Background:
    """The workers' outcomes, collected by a thread while this process trains its own jobs."""

    _END = object()

    def __init__(self, outcomes: Outcome):
        self.queue: queue.Queue = queue.Queue()
        self.done = False
        self.thread = threading.Thread(target=self._collect, args=(outcomes,), name="worker-results", daemon=True)
        self.thread.start()

    def _collect(self, outcomes: Outcome) -> None:
        try:
            for outcome in outcomes:
                self.queue.put(outcome)
        except BaseException as error:  # handed to the search's thread, which raises it
            self.queue.put(error)
        finally:
            self.queue.put(self._END)

    def finished(self, wait: bool = False) -> Outcome:
        """The outcomes that arrived so far (with `wait`: all of them, as they arrive)."""
        while not self.done:
            try:
                item = self.queue.get(block=wait)
            except queue.Empty:
                return
            if item is self._END:
                self.done = True
            elif isinstance(item, BaseException):
                self.done = True
                raise item
            else:
                yield item


def _in_workers(jobs: list[Job], X, y, scorer, workers: int, threads: int) -> Outcome:
    """Jobs in `workers` processes (joblib's reusable loky executor) of `threads` TensorFlow
    threads each, as they finish; if a worker dies, its job and those not yet finished come back
    as lost."""
    from concurrent.futures import as_completed

    from joblib.externals.loky import get_reusable_executor

    from .supervisor import exit_with_parent

    # exit_with_parent: a worker whose search was killed (SIGKILL) ends at once instead of lingering with its memory
    executor = get_reusable_executor(max_workers=workers, initializer=exit_with_parent, initargs=(os.getpid(),))
    futures = {executor.submit(train_in_worker, job, X, y, scorer, threads): job for job in jobs}
    for future in as_completed(futures):
        try:
            yield futures[future], future.result()
        except Exception as error:
            if not is_infrastructure(error):
                raise
            yield futures[future], error


def train_in_worker(job: Job, X, y, scorer, threads: int, ignore_interrupt: bool = True):
    """`train_job` in a worker process with its own training context and `threads` TensorFlow threads.
    Ctrl-C reaches the whole process group; the search's process handles it, so workers ignore it."""
    import signal

    from ..core.runtime import configure_threads
    from ..training.context import TrainingContext

    if ignore_interrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_threads(threads)
    return train_job(job, X, y, scorer, TrainingContext())


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
