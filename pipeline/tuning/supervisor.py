"""Runs a search as a series of short-lived worker processes that continue from the fit journal.

TensorFlow 2.21 keeps about 1.5-3 MB per trained model that neither `clear_session()` nor
`gc.collect()` frees (measured here: it grows with every traced training function), so a
long search in one process grows and slows down. The supervisor never trains: it starts
`python -m pipeline.search --worker RUN_DIR --worker-fits N`, which resumes the run, trains at
most N new fits (journaled ones are replayed, not retrained) and exits with EXIT_RECYCLE;
then a fresh worker continues. A worker that crashes (killed, out of memory) is restarted the
same way: what it had not recorded trains again. The supervisor holds the run's lock for the
whole run (its caller takes it), so no other search can slip in between two workers; it also
draws the progress bar, from the journal, so it counts fits in any process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..core.errors import EXIT_INTERRUPTED
from .store import JOURNAL_NAME, JournalProgress, count_lines

EXIT_RECYCLE = 75
EXIT_ORPHANED = 76
_FINAL_CODES = {0, 1, 2, EXIT_INTERRUPTED}
_MAX_RESTARTS_WITHOUT_PROGRESS = 2


def supervise(run_dir: Path, total_fits: int, fits_per_process: int, progress: bool) -> int:
    """Start workers until the run finishes, stops or keeps crashing; returns the exit code."""
    journal = run_dir / JOURNAL_NAME
    stalled = 0
    with JournalProgress(journal, total_fits, enabled=progress):
        while True:
            before = count_lines(journal)
            code = _run_worker(run_dir, fits_per_process)
            if code in _FINAL_CODES:
                return code
            if code == EXIT_RECYCLE:
                continue
            stalled = stalled + 1 if count_lines(journal) == before else 0
            if stalled >= _MAX_RESTARTS_WITHOUT_PROGRESS:
                print(f"error: the worker process died {stalled} times without finishing a fit (exit code {code}); "
                      f"see the messages above, then resume with: python -m pipeline.search --resume {run_dir}",
                      file=sys.stderr)
                return 1
            print(f"WARNING: worker process ended with exit code {code}; continuing from the journal", file=sys.stderr)


def _run_worker(run_dir: Path, fits_per_process: int) -> int:
    command = [sys.executable, "-m", "pipeline.cli.search", "--worker", str(run_dir), "--worker-fits", str(fits_per_process)]
    # Its own session: a terminal Ctrl-C reaches the supervisor only, which forwards it once.
    worker = subprocess.Popen(command, start_new_session=True)
    forward = lambda signum, frame: worker.send_signal(signum)  # noqa: E731
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return worker.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if worker.poll() is None:
            worker.kill()


def exit_with_parent(parent: int | None = None) -> None:
    """In a worker process (the supervisor's, or a search's joblib worker): exit as soon as the
    process that started it (pid `parent`, by default the present parent) is gone, e.g. killed
    with SIGKILL, even if that happened before this call."""
    parent = parent or os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
