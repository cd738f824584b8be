"""Run folders, the run lock, atomic file writes and plain JSON values.

A run folder is created once, at the start of a run, with an exclusive `mkdir`: two runs
started in the same second get different folders instead of sharing one. Every results
file is written to a temporary file in the same folder and renamed into place, so a crash
leaves either the old file or the new one, never a truncated one. One process at a time
trains in a run folder: the one holding its lock (`run_lock`, a `filelock.FileLock`, which
the operating system releases when the process dies, so a killed run never stays locked).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from .errors import PipelineError

TRACKED_LIBRARIES = ("pipeline", "tensorflow-cpu", "tensorflow", "keras", "scikeras", "scikit-learn", "numpy", "pandas")
LOCK_NAME = ".lock"


def create_run_dir(output_dir: str | Path, experiment: str, now: datetime | None = None) -> Path:
    """`output_dir/<experiment>-<UTC timestamp>`, made exclusively (a suffix is added on collision)."""
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PipelineError(f"cannot create output folder {output_dir} ({error.strerror}); choose another with output_dir") from None
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        candidate = output_dir / (f"{experiment}-{stamp}" + (f"-{attempt + 1}" if attempt else ""))
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise PipelineError(f"could not create a new run folder in {output_dir}: too many runs named {experiment}-{stamp}")


@contextmanager
def run_lock(run_dir: str | Path, wait_s: float = 2.0) -> Iterator[None]:
    """Hold the exclusive lock of a run folder for the block (on every OS, through filelock).

    Two processes training in one run would train the same fits twice. We wait `wait_s` for a
    process that is just exiting; a run locked longer is in use by another search.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(Path(run_dir) / LOCK_NAME)
    try:
        lock.acquire(timeout=wait_s)
    except Timeout:
        raise PipelineError(f"{run_dir} is in use by another running search; wait for it or stop it first") from None
    try:
        yield
    finally:
        lock.release()


def run_is_locked(run_dir: str | Path) -> bool:
    """Whether a process holds the run's lock right now (a "running" run that is not locked died)."""
    from filelock import FileLock, Timeout

    if not (Path(run_dir) / LOCK_NAME).exists():
        return False
    lock = FileLock(Path(run_dir) / LOCK_NAME)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


@contextmanager
def _replacing(path: Path, suffix: str) -> Iterator[str]:
    """A temporary sibling of `path` to write, renamed over `path` on success and removed on failure.

    Errors name `path`, not the temporary file, so a full disk is reported for the file the user knows.
    """
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
        os.close(handle)
    except OSError as error:
        error.filename = str(path)
        raise
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            error.filename = str(path)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` via a temporary file, fsync and rename: all or nothing."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file, fsync and rename: all or nothing."""
    with _replacing(Path(path), ".tmp") as temporary:
        with open(temporary, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())


@contextmanager
def replacing_folder(path: str | Path) -> Iterator[Path]:
    """A fresh temporary sibling folder to fill, put in place of `path` on success (the old
    folder, if any, removed only then) and removed on failure: readers see the old folder or
    the new one, never a half-written one (but for the instant between two renames)."""
    path = Path(path)
    temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        yield temporary
        os.chmod(temporary, 0o777 & ~_umask())  # mkdtemp makes 0700
        old = path.with_name(f"{temporary.name}.old")
        if path.exists():
            path.rename(old)
        temporary.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=plain) + "\n")


def write_csv_atomic(frame, path: str | Path, **kwargs: Any) -> None:
    """Write a pandas DataFrame as CSV atomically."""
    write_text_atomic(path, frame.to_csv(index=False, **kwargs))


def save_figure_atomic(figure, path: str | Path, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG via a temporary file and a rename."""
    with _replacing(Path(path), ".png") as temporary:
        figure.savefig(temporary, dpi=dpi, format="png")
    return Path(path)


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from `path`, or {} when the file does not exist."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def plain(value: Any) -> Any:
    """A JSON value for numpy scalars and arrays, tuples, sets and paths (the `default` of json.dumps).

    Anything else is a TypeError: a value that cannot be written faithfully is never written at all.
    """
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def seconds_since(started: str | None) -> float | None:
    """Seconds from an ISO timestamp (e.g. run.json's `started`) until now."""
    if not started:
        return None
    return round((datetime.now(timezone.utc) - datetime.fromisoformat(started)).total_seconds(), 1)


def _umask() -> int:
    """The process's umask (reading it means setting it; set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
