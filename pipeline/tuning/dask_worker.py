"""What runs inside a Dask worker: the TensorFlow thread setting and the training task.

Imported by `pipeline.tuning.cluster` only once Dask is in use (it imports `distributed`), and by
the workers when they unpickle the plugin or a task.
"""

from __future__ import annotations

import asyncio

from distributed.diagnostics.plugin import WorkerPlugin


class TensorFlowThreads(WorkerPlugin):
    """Gives TensorFlow on each worker as many threads as the worker has Dask threads, so that
    workers x threads stay within the cores. Registered with the scheduler, so every worker gets
    it: those present, and those that join or restart later (before their first task)."""

    name = "pipeline-tensorflow-threads"

    async def setup(self, worker) -> None:
        from ..core.runtime import configure_threads

        # Importing TensorFlow takes seconds: off the worker's event loop, which keeps answering meanwhile.
        await asyncio.get_running_loop().run_in_executor(None, configure_threads, worker.state.nthreads)


def train_on_worker(job, X, y, scorer):
    """A Dask task: one job (a fused program or a single fit), trained with its own context and the
    threads `TensorFlowThreads` set."""
    from .runners import train_in_worker

    return train_in_worker(job, X, y, scorer, threads=None, ignore_interrupt=False)
