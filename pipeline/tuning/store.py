"""The fit store: the run's append-only journal of fit records (`journal.jsonl`), and its incident log.

One JSON line per finished fit, appended by the one process that holds the run (the search's
process; fits trained in worker processes or on Dask come back to it as records). An append
is all or nothing: one `write`, checked, fsynced; a short write (a full disk) is truncated
back to the last complete record and reported as an infrastructure failure. So a crash can
at most leave a half-written last line, which opening the store removes with a warning; a
damaged line anywhere else means the file was edited or corrupted, a `PipelineError`.

Reading is incremental: the store remembers the byte offset it has parsed up to and parses
only what was appended since (by itself or, for a progress bar, by another process).

Infrastructure failures are not results: they go to `incidents.jsonl` beside the journal,
for the user to read, and are never replayed.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..core.errors import PipelineError
from ..core.files import plain
from .records import FitRecord, InfrastructureFailure, describe_error

JOURNAL_NAME = "journal.jsonl"
INCIDENTS_NAME = "incidents.jsonl"


class FitStore:
    """The fit records of one run, by (candidate key, fold key), in journal order."""

    def __init__(self, path: str | Path, repair: bool = True):
        self.path = Path(path)
        self._offset = 0
        self._records: list[FitRecord] = []
        self._index: dict[tuple[str, str], FitRecord] = {}
        if repair:
            self._drop_torn_tail()
        self.refresh()

    def __deepcopy__(self, memo: dict) -> "FitStore":
        """The one store of the run, also for the estimator clones scikit-learn makes."""
        return self

    def refresh(self) -> None:
        """Parse the complete lines appended since the last read (a partial tail is left for later)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        line_number = len(self._records)
        for line in data[:end].splitlines():
            line_number += 1
            try:
                record = FitRecord.from_dict(json.loads(line))
            except (ValueError, TypeError):
                raise PipelineError(f"{self.path}: line {line_number} is not a fit record; the journal is damaged: "
                                    "start a new run (or delete that line to re-run its fit)") from None
            self._add(record)
        self._offset += end

    def _add(self, record: FitRecord) -> None:
        self._records.append(record)
        self._index[(record.key, record.fold)] = record

    def _drop_torn_tail(self) -> None:
        """Remove a half-written last line (the run was killed mid-append), with a warning."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            print(f"WARNING: {self.path}: dropping a half-written last line (the run was killed mid-write); "
                  "that fit will run again", file=sys.stderr)
            with open(self.path, "r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)
                os.fsync(handle.fileno())

    def append(self, record: FitRecord) -> None:
        """Append one record durably, all or nothing."""
        line = (record.to_json() + "\n").encode()
        self.refresh()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.lseek(descriptor, 0, os.SEEK_END)
            try:
                written = os.write(descriptor, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, f"short write, {written} of {len(line)} bytes: is the disk full?")
                os.fsync(descriptor)
            except OSError as error:
                os.ftruncate(descriptor, start)
                raise InfrastructureFailure(f"cannot write the fit journal {self.path} ({error.strerror or error})") from None
        finally:
            os.close(descriptor)
        self._offset += len(line)
        self._add(record)

    def lookup(self, key: str, fold: str) -> FitRecord | None:
        return self._index.get((key, fold))

    def records(self) -> list[FitRecord]:
        self.refresh()
        return list(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def trailing_failures(self) -> int:
        """How many of the most recently recorded fits failed in a row (candidate failures only:
        infrastructure failures are never recorded)."""
        count = 0
        for record in reversed(self._records):
            if not record.failed:
                break
            count += 1
        return count


def count_lines(path: str | Path) -> int:
    """Finished lines in a journal (cheap: no parsing), for progress."""
    try:
        return Path(path).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def log_incident(run_dir: str | Path, what: str, error: BaseException | str, **details: Any) -> None:
    """Record an infrastructure failure in the run folder and warn on stderr (best effort: the
    disk may be the very problem)."""
    reason = error if isinstance(error, str) else describe_error(error)
    print(f"WARNING: {what}: {reason}", file=sys.stderr)
    entry = {"time": round(time.time(), 3), "pid": os.getpid(), "what": what, "reason": reason, **details}
    try:
        with open(Path(run_dir) / INCIDENTS_NAME, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, default=plain) + "\n")
    except OSError:
        pass


def read_incidents(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / INCIDENTS_NAME
    if not path.is_file():
        return []
    incidents = []
    for line in path.read_text().splitlines():
        try:
            incidents.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a full disk: the log is best effort
            continue
    return incidents


class JournalProgress:
    """A tqdm bar over fits, advanced by a thread watching the journal grow: it counts fits
    recorded by any process. Silent when disabled or when stderr is not a terminal."""

    def __init__(self, path: str | Path, total: int, enabled: bool = True):
        from tqdm.auto import tqdm

        self.path = Path(path)
        self.bar = tqdm(total=total, initial=min(count_lines(path), total), unit="fit", desc="search",
                        disable=not enabled or not sys.stderr.isatty(), dynamic_ncols=True)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="journal-progress", daemon=True)

    def _watch(self) -> None:
        while not self.done.wait(0.5):
            self.bar.update(max(0, min(count_lines(self.path), self.bar.total) - self.bar.n))

    def __enter__(self) -> "JournalProgress":
        if not self.bar.disable:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()
        self.bar.close()
