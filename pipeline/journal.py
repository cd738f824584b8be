"""The per-fit journal: one JSON line per finished (candidate, fold) fit, appended and fsynced.

It is what makes a search resumable. A fit is identified by the hash of its candidate's
hyperparameters and the hash of the training data it saw (the fold), so the same record is
found again on resume whatever order scikit-learn runs the fits in, in whichever process.
Appends are single `write` calls on an `O_APPEND` descriptor, so several worker processes
can share one journal; a crash can at most leave the last line half-written, which
`read_journal` ignores with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PipelineError

JOURNAL_NAME = "journal.jsonl"


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record durably (flushed and fsynced before returning). `pid` defaults to this
    process's; records of fits trained elsewhere (worker processes) carry the trainer's."""
    line = json.dumps({"pid": os.getpid(), **record, "time": round(time.time(), 3)}, default=_plain) + "\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line.encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def data_key(X, y) -> str:
    """A short fingerprint of a data set (its rows and labels): the fold part of a fit's identity."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(X).view(np.uint8).data)
    digest.update(np.ascontiguousarray(y).view(np.uint8).data)
    return digest.hexdigest()[:12]


def read_journal(path: str | Path, warn: bool = True) -> list[dict[str, Any]]:
    """All complete records. A half-written last line (a crash mid-append) is skipped with a warning;
    a corrupt line anywhere else means the file was damaged, which is a `PipelineError`."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    complete, tail = lines[:-1], lines[-1]  # the text after the last newline was never finished
    records = []
    for number, line in enumerate(complete, start=1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "key" not in record or "fold" not in record:
                raise ValueError("not a journal record")
        except ValueError:
            raise PipelineError(
                f"{path}: line {number} is not a valid journal record; the journal is damaged, "
                "start a new run (or delete that line to re-run its fit)"
            ) from None
        records.append(record)
    if tail.strip() and warn:
        print(f"WARNING: {path}: ignoring a half-written last line (the run was killed mid-write); "
              "that fit will run again", file=sys.stderr)
    return records


def repair_journal(path: str | Path) -> int:
    """Before appending again: drop a half-written last line (with a warning). Returns the records kept."""
    path = Path(path)
    if not path.exists():
        return 0
    records = read_journal(path)
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
            handle.flush()
            os.fsync(handle.fileno())
    return len(records)


def resident_mb() -> float | None:
    """This process's resident memory in MB (Linux /proc), recorded with each fit to watch for leaks."""
    try:
        with open("/proc/self/statm") as handle:
            return round(int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except OSError:
        return None


class JournalIndex:
    """Finished fits by (candidate key, fold key), re-read when the file has grown (other processes)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._size = -1
        self._records: dict[tuple[str, str], dict[str, Any]] = {}
        self._order: list[dict[str, Any]] = []

    def _refresh(self) -> None:
        size = self.path.stat().st_size if self.path.exists() else 0
        if size != self._size:
            self._order = read_journal(self.path, warn=self._size < 0)
            self._records = {(r["key"], r["fold"]): r for r in self._order}
            self._size = size

    def lookup(self, key: str, fold: str) -> dict[str, Any] | None:
        self._refresh()
        return self._records.get((key, fold))

    def trailing_failures(self) -> int:
        """How many of the most recently journaled fits failed in a row."""
        self._refresh()
        count = 0
        for record in reversed(self._order):
            if not record.get("error"):
                break
            count += 1
        return count


_indexes: dict[str, JournalIndex] = {}


def journal_index(path: str | Path) -> JournalIndex:
    """One index per journal file and process."""
    key = str(Path(path).resolve())
    if key not in _indexes:
        _indexes[key] = JournalIndex(path)
    return _indexes[key]


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


def count_records(path: str | Path) -> int:
    """Finished lines in the journal (cheap: no parsing), for progress."""
    try:
        return Path(path).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


class JournalProgress:
    """A tqdm bar over fits, advanced by a thread watching the journal grow: it counts fits
    finished in any process. Silent when disabled or when stderr is not a terminal."""

    def __init__(self, path: str | Path, total: int, enabled: bool = True):
        from tqdm.auto import tqdm

        self.path = Path(path)
        self.bar = tqdm(total=total, initial=min(count_records(path), total), unit="fit", desc="search",
                        disable=not enabled or not sys.stderr.isatty(), dynamic_ncols=True)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="journal-progress", daemon=True)

    def _watch(self) -> None:
        while not self.done.wait(0.5):
            self.bar.update(max(0, min(count_records(self.path), self.bar.total) - self.bar.n))

    def __enter__(self) -> "JournalProgress":
        if not self.bar.disable:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()
        self.bar.close()
