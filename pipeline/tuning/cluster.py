"""The Dask backend: a search's jobs trained by the workers of a Dask cluster.

`dask_client` connects to a running scheduler (`--scheduler tls://host:8786` with the cluster's
certificate files, see `pipeline.tuning.certificates`) or starts a LocalCluster sized to the
machine (loopback only, TLS), checks that the scheduler and every worker can import `pipeline`
(if they cannot, Dask would hang silently), registers the worker plugin that sets TensorFlow's
threads (`pipeline.tuning.dask_worker`), and always closes what it started.

`DaskRunner` runs the session's jobs (`pipeline.tuning.engine`) as tasks, one fused program (or
single fit) per task: the training data is scattered to the cluster once; each task trains its
job with its own training context and returns the records, which the search's process writes as
tasks finish. A task that fails (a killed or lost worker, after Dask's own retries) is an
infrastructure failure: the session logs and retries it, and it never becomes a candidate's result.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Iterator

from ..core.errors import PipelineError
from .certificates import INSTALL, TlsFiles, cluster_security

# Evaluated by `eval`, so the check itself unpickles anywhere; `pipeline` imports lazily, so this
# does not load TensorFlow (whose threads are set after it).
IMPORT_CHECK = "__import__('pipeline').__name__"


@contextmanager
def dask_client(scheduler: str | None, cores: int, dashboard: bool = False,
                tls: TlsFiles | None = None) -> Iterator[Any]:
    """A connected and checked `distributed.Client`: to `scheduler` (over TLS with `tls`, or Dask's
    own TLS settings, for a tls:// address), or to a new LocalCluster of `cores` single-threaded
    worker processes, closed (cluster included) on exit, error or Ctrl-C.

    A Dask scheduler runs whatever pickled code its clients send, so the local cluster listens on
    127.0.0.1 only and speaks TLS with certificates made in memory for this cluster alone
    (`Security.temporary()`): another user of this machine can neither connect nor read the
    traffic. Its dashboard is off unless asked for (`dashboard`, then on 127.0.0.1 too); the
    scheduler's small HTTP server (health, metrics) takes a free loopback port instead of 8787."""
    try:
        from distributed import Client, LocalCluster
        from distributed.security import Security
    except ImportError:
        raise PipelineError(f"--backend dask needs Dask: {INSTALL}") from None
    cluster = None
    try:
        if scheduler:
            client = _connect(Client, scheduler, cluster_security(scheduler, tls))
        else:
            try:
                security = Security.temporary()
            except ImportError:
                raise PipelineError(f"--backend dask needs the cryptography package for its TLS certificates: "
                                    f"{INSTALL}") from None
            with _sigint_ignored():  # the workers inherit it: Ctrl-C is the search's to handle, then it closes the cluster
                cluster = LocalCluster(n_workers=cores, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       protocol="tls", security=security, silence_logs=40,
                                       dashboard_address="127.0.0.1:0" if dashboard else None,
                                       scheduler_kwargs={"dashboard_address": "127.0.0.1:0", "dashboard": dashboard})
            client = Client(cluster)  # the cluster's security
            if dashboard:
                print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
        try:
            check_cluster(client, scheduler or "the local cluster")
            from .dask_worker import TensorFlowThreads

            client.register_plugin(TensorFlowThreads())
            try:
                yield client
            finally:
                if scheduler:  # a shared cluster's later workers need not load TensorFlow for us
                    _unregister(client, TensorFlowThreads.name)
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def _connect(Client, scheduler: str, security) -> Any:
    """A client of `scheduler`, or one line saying why not: a TLS refusal (certificates that are
    not the cluster's) or no scheduler there."""
    try:
        return Client(scheduler, security=security, timeout="10s")
    except (OSError, TimeoutError) as error:
        text = str(error)
        if security is not None and ("certificate" in text.lower() or "SSL" in text):
            raise PipelineError(f"the Dask scheduler at {scheduler} refused the TLS connection ({text}); give the "
                                "--tls-ca/--tls-cert/--tls-key files the scheduler and workers were started with") from None
        raise PipelineError(f"cannot reach the Dask scheduler at {scheduler} ({error}); start one with "
                            "`dask scheduler` or drop --scheduler to use a local cluster") from None


def _unregister(client, name: str) -> None:
    """Remove our worker plugin from the scheduler, if it can still be reached."""
    try:
        client.unregister_worker_plugin(name)
    except Exception:  # a lost scheduler keeps nothing anyway; the search's outcome is what matters
        pass


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


class DaskRunner:
    """Runs the session's jobs as Dask tasks, the data scattered once per array (again after a loss)."""

    trainers = 1  # jobs are planned as for one process: the cluster takes them as they come

    def __init__(self, client):
        self.client = client
        self._scattered: dict[int, tuple[Any, Any, Any]] = {}

    def _data(self, X, y):
        """The futures of (X, y), scattered to every worker the first time this array is seen."""
        if id(X) not in self._scattered:
            self._scattered[id(X)] = (X, *self.client.scatter([X, y], broadcast=True))
        _, X_future, y_future = self._scattered[id(X)]
        return X_future, y_future

    def run(self, jobs, X, y, scorer, context) -> Iterator[tuple[Any, Any]]:
        from distributed import as_completed

        from .dask_worker import train_on_worker

        if not jobs:
            return
        X_future, y_future = self._data(X, y)
        # One job per worker thread to start with: left to itself, Dask may queue two programs on
        # one single-threaded worker while another idles (seen in CI). The placement is loose, so
        # an idle worker can still steal a queued job, and a lost worker's job runs elsewhere.
        threads = [address for address, count in sorted(self.client.nthreads().items()) for _ in range(count)]
        futures = {self.client.submit(train_on_worker, job, X_future, y_future, scorer, pure=False,
                                      workers=[threads[i % len(threads)]] if threads else None,
                                      allow_other_workers=True): job
                   for i, job in enumerate(jobs)}
        try:
            for future in as_completed(futures):
                try:
                    yield futures[future], future.result()
                except Exception as error:  # e.g. KilledWorker after Dask's retries: infrastructure
                    # Dask's memory manager keeps one replica of scattered data, so a lost worker can
                    # take it along ("lost dependencies"): the retry scatters it again.
                    self._scattered.pop(id(X), None)
                    yield futures[future], error
        finally:
            self.client.cancel(list(futures))
