"""The Dask backend: a search's fits trained by the workers of a Dask cluster.

`dask_client` connects to a running scheduler (`--scheduler tcp://host:8786`) or starts a
LocalCluster sized to the machine, checks that the scheduler and every worker can import
`pipeline` (if they cannot, Dask would hang silently), sets TensorFlow's thread count of each
worker to its Dask thread count before TensorFlow loads there, and always closes what it started.

`DaskRunner` is the job runner of `pipeline.fusion` for it: the training data is scattered to
the cluster once; every job (a fused group or one candidate on one fold) is a task whose
journal records come back to the search's process, which journals them as tasks finish. So
the run folder, journal, CSVs and model are written on the submitting machine, and a fit lost
with a dying worker is retried by Dask on another worker or, after Dask's retries, recorded
as failed with the reason.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

from .errors import PipelineError

# Evaluated by `eval`, so the check itself unpickles anywhere; `pipeline` imports lazily, so this
# does not load TensorFlow (whose threads are set after it).
IMPORT_CHECK = "__import__('pipeline').__name__"


@contextmanager
def dask_client(scheduler: str | None, cores: int) -> Iterator[Any]:
    """A connected `distributed.Client`: to `scheduler`, or to a new LocalCluster of `cores`
    single-threaded worker processes, closed (cluster included) on exit, error or Ctrl-C."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise PipelineError("--backend dask needs Dask: pip install -e \".[dask]\"") from None
    from ._tf import THREADS_VARIABLE

    cluster = None
    try:
        if scheduler:
            try:
                client = Client(scheduler, timeout="10s")
            except (OSError, TimeoutError) as error:
                raise PipelineError(f"cannot reach the Dask scheduler at {scheduler} ({error}); start one with "
                                    "`dask scheduler` or drop --scheduler to use a local cluster") from None
        else:
            os.environ[THREADS_VARIABLE] = "1"  # inherited by the worker processes, read when TensorFlow loads
            with _sigint_ignored():  # inherited too: Ctrl-C is the search's to handle, then it closes the cluster
                cluster = LocalCluster(n_workers=cores, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       silence_logs=40)
            client = Client(cluster)
        try:
            check_cluster(client, scheduler or "the local cluster")
            client.run(set_worker_threads)
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Processes started meanwhile ignore SIGINT (Python keeps an ignored SIGINT ignored), so a
    terminal's Ctrl-C, sent to the whole process group, does not kill the workers mid-task."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def check_cluster(client, where: str) -> None:
    """Fail fast, with the fix, when the scheduler or a worker cannot import pipeline or there are no workers."""
    def failure(process: str, error: Exception) -> PipelineError:
        return PipelineError(f"the Dask {process} at {where} cannot import pipeline ({type(error).__name__}: {error}); "
                             "install this project in the Python environment of the scheduler and every worker "
                             "(pip install -e .) and restart them")

    try:
        client.run_on_scheduler(eval, IMPORT_CHECK)
    except Exception as error:  # whatever the remote side raised, re-raised here
        raise failure("scheduler", error) from None
    if not client.scheduler_info().get("workers"):
        try:
            client.wait_for_workers(1, timeout=30)
        except TimeoutError:
            raise PipelineError(f"no Dask worker joined {where} within 30 s; start workers with "
                                f"`dask worker {where}`") from None
    try:
        client.run(eval, IMPORT_CHECK)
    except Exception as error:
        raise failure("worker", error) from None


def set_worker_threads(dask_worker=None) -> int:
    """Run on every worker: TensorFlow threads = the worker's Dask threads, if TensorFlow has not loaded yet."""
    from ._tf import THREADS_VARIABLE

    threads = dask_worker.state.nthreads if dask_worker is not None else 1
    os.environ[THREADS_VARIABLE] = str(threads)
    return threads


class DaskRunner:
    """Runs the jobs of `pipeline.fusion.train_groups` as Dask tasks, data scattered once."""

    trains_everything = True  # every fit, fused or alone, so every record comes back to the journal here

    def __init__(self, client):
        self.client = client
        self._scattered: dict[int, tuple[Any, Any, Any]] = {}

    def _data(self, X, y):
        """The futures of (X, y), scattered to every worker the first time this array is seen."""
        if id(X) not in self._scattered:
            self._scattered[id(X)] = (X, *self.client.scatter([X, y], broadcast=True))
        _, X_future, y_future = self._scattered[id(X)]
        return X_future, y_future

    def run(self, jobs, X, y, scorer) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
        from distributed import as_completed

        from .fusion import train_group

        if not jobs:
            return
        X_future, y_future = self._data(X, y)
        futures = {self.client.submit(train_group, job, X_future, y_future, scorer, pure=False): job for job in jobs}
        try:
            for future in as_completed(futures):
                job = futures[future]
                try:
                    records = future.result()
                except Exception as error:  # e.g. KilledWorker after Dask's retries
                    records = failed_records(job, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no message'}")
                yield job, records
        finally:
            self.client.cancel(list(futures))


def failed_records(job, reason: str) -> list[dict[str, Any]]:
    """Journal records for a job whose task failed as a whole: every candidate failed with `reason`."""
    from .fusion import _record

    return [_record(key, candidate, job.fold, reason, 0.0, {}) for key, candidate in zip(job.keys, job.candidates)]
