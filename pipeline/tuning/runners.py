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

from .engine import Job, assign, train_job
from .records import is_infrastructure

Outcome = Iterator[tuple[Job, Any]]


class LocalRunner:
    """Trains here and, for several fused jobs, in worker processes too.

    This process and up to `n_jobs - 1` workers train the fused jobs at once, the costliest
    first, each job to the trainer with the least work so far; the jobs of one candidate train
    here (reusing its compiled models). At most `n_jobs` processes hold TensorFlow (each
    ~0.6 GB), each with `cores // n_jobs` threads: on this machine two processes of one thread
    trained a program's towers from about 1.5x faster to about 10% slower than one process of
    two threads (five runs of `benchmarks/fused_profile.py`).
    Workers started early (`EarlyWorkers`, while this process loads TensorFlow and the data)
    take any fused job; otherwise a worker's start-up (loading TensorFlow, ~5 s) costs about as
    much as a job, so only four fused jobs or more are shared with a worker."""

    def __init__(self, n_jobs: int = 1, workers: int = 0):
        from ..core.runtime import configure_threads

        self.n_jobs = n_jobs
        self.workers = workers  # worker processes running (started early, or by an earlier `run`)
        if workers:
            configure_threads(threads_per_process(n_jobs))  # before this process trains alongside them

    @property
    def trainers(self) -> int:
        """How many processes train at once when workers are running: the engine splits its jobs for them."""
        return 1 + self.workers

    def run(self, jobs: list[Job], X, y, scorer, context) -> Outcome:
        fused = [job for job in jobs if job.size > 1]
        trainers = min(1 + self.workers, len(fused)) if self.workers else min(self.n_jobs, len(fused) // 2)
        away = _away(fused, trainers)
        here = [job for job in jobs if not any(job is other for other in away)]
        if not away:
            yield from _here(here, X, y, scorer, context)
            return
        self.workers = self.workers or trainers - 1
        workers = _Background(_in_workers(away, X, y, scorer, self.workers, threads_per_process(self.n_jobs)))
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
        memory is better freed while the best model is refitted here (killed: at once)."""
        if self.workers:
            _executor(self.workers).shutdown(wait=kill, kill_workers=kill)
            self.workers = 0


def _away(fused: list[Job], trainers: int) -> list[Job]:
    """The jobs for the workers (`assign`'s trainers but the first, this process)."""
    return [job for job, trainer in zip(fused, assign(fused, trainers)) if trainer] if trainers > 1 else []


class EarlyWorkers:
    """A local fused search's `n_jobs - 1` worker processes, started before anything else, so
    that they load TensorFlow (with their threads set) while this process loads its own and the
    data. `count` workers run; the search's `LocalRunner` sends them its jobs (through the same
    reusable executor) and ends them; `close` ends them if the search never ran here (a
    finished run, a supervised one, an error)."""

    def __init__(self, n_jobs: int, fuse: bool):
        self.executor = _executor(n_jobs - 1) if fuse and n_jobs > 1 else None
        self.count = n_jobs - 1 if self.executor else 0
        if self.executor:
            self.executor.submit(_prepare_worker, threads_per_process(n_jobs))  # a failure shows as lost jobs

    def close(self) -> None:
        """End the workers if the search's runner has not (it ends them after the last job)."""
        if self.executor:
            self.executor.shutdown(wait=True, kill_workers=True)  # at most a TensorFlow import to interrupt
        self.count = 0

    def __enter__(self) -> "EarlyWorkers":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _prepare_worker(threads: int) -> None:
    """A worker's first task: load TensorFlow with `threads` threads. It also turns off loky's
    restart of a worker whose memory grew 300 MB since its first task: after a first task that
    trains nothing, every job would restart the worker (and load TensorFlow again, ~5 s). The
    workers end with the search, or with the supervisor's process every `fits_per_process` fits."""
    from joblib.externals.loky import process_executor

    from ..core.runtime import configure_threads

    process_executor._USE_PSUTIL = False  # read by the worker's loop after each task
    configure_threads(threads)


def threads_per_process(n_jobs: int) -> int:
    return max(1, available_cores() // n_jobs)


def _executor(workers: int):
    """joblib's reusable loky executor of `workers` processes, which end with this one."""
    from joblib.externals.loky import get_reusable_executor

    from .supervisor import exit_with_parent

    # exit_with_parent: a worker whose search was killed (SIGKILL) ends at once instead of lingering with its memory
    return get_reusable_executor(max_workers=workers, initializer=exit_with_parent, initargs=(os.getpid(),))


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

    executor = _executor(workers)
    futures = {executor.submit(train_in_worker, job, X, y, scorer, threads): job for job in jobs}
    for future in as_completed(futures):
        try:
            yield futures[future], future.result()
        except Exception as error:
            if not is_infrastructure(error):
                raise
            yield futures[future], error


def train_in_worker(job: Job, X, y, scorer, threads: int | None, ignore_interrupt: bool = True):
    """`train_job` in a worker process with its own training context and `threads` TensorFlow
    threads (None: as set already, e.g. by a Dask worker plugin). Ctrl-C reaches the whole process
    group; the search's process handles it, so workers ignore it."""
    import signal

    from ..core.runtime import configure_threads
    from ..training.context import TrainingContext

    if ignore_interrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if threads is not None:
        configure_threads(threads)
    return train_job(job, X, y, scorer, TrainingContext())


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
