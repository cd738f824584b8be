"""Where jobs train: in the search's process, or in local worker processes (the Dask runner is in
`pipeline.tuning.cluster`).

A runner's `run(jobs, X, y, scorer, context)` yields `(job, records)` as jobs finish, or
`(job, error)` for a job lost to an infrastructure failure (out of memory, a killed worker),
which the session logs and retries; a candidate's own failure is already a record.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

from .engine import Job, train_job
from .records import is_infrastructure

Outcome = Iterator[tuple[Job, Any]]


class LocalRunner:
    """Trains here, or fused jobs in joblib worker processes (the data memory-mapped to them once).

    A worker's start-up (loading TensorFlow, ~5 s) costs about as much as training one group, so
    there are never more workers than half the fused jobs: 3 jobs train here, 4 or more in 2
    workers. Jobs of one candidate train here, reusing this process's compiled model."""

    def __init__(self, n_jobs: int = 1):
        self.n_jobs = n_jobs
        self.started_workers = False

    def run(self, jobs: list[Job], X, y, scorer, context) -> Outcome:
        fused = [job for job in jobs if job.size > 1]
        workers = min(self.n_jobs, len(fused) // 2)
        here = [job for job in jobs if job.size == 1 or workers <= 1]
        if workers > 1:
            self.started_workers = True
            yield from _in_workers(fused, X, y, scorer, workers)
        for job in here:
            try:
                records = train_job(job, X, y, scorer, context)
            except Exception as error:
                if not is_infrastructure(error):
                    raise
                yield job, error
                continue
            yield job, records

    def close(self) -> None:
        """End the worker processes, which joblib keeps for reuse: the search is over, and their
        memory (about 0.7 GB each) is better freed before the best model is refitted here."""
        if self.started_workers:
            from joblib.externals.loky import get_reusable_executor

            get_reusable_executor(reuse=True).shutdown(wait=True)
            self.started_workers = False


def _in_workers(jobs: list[Job], X, y, scorer, workers: int) -> Outcome:
    """Jobs in `workers` joblib processes; if a worker dies, the jobs not yet finished come back as lost."""
    from joblib import Parallel, delayed

    threads = max(1, available_cores() // workers)
    results = Parallel(n_jobs=workers, return_as="generator")(
        delayed(train_in_worker)(job, X, y, scorer, threads) for job in jobs)
    done = 0
    try:
        for records in results:
            yield jobs[done], records
            done += 1
    except Exception as error:
        if not is_infrastructure(error):
            raise
        for job in jobs[done:]:
            yield job, error


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
