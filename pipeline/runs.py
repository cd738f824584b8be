"""Run folders and atomic file writes.

A run folder is created once, at the start of a run, with an exclusive `mkdir`: two runs
started in the same second get different folders instead of sharing one. Every results
file is written to a temporary file in the same folder and renamed into place, so a crash
leaves either the old file or the new one, never a truncated one.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from .errors import PipelineError

_UMASK = os.umask(0o022)
os.umask(_UMASK)

TRACKED_LIBRARIES = ("pipeline", "tensorflow-cpu", "tensorflow", "keras", "scikeras", "scikit-learn", "numpy", "pandas")


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
def lock_run(run_dir: str | Path, wait_s: float = 10.0) -> Iterator[None]:
    """Hold an exclusive lock on a run folder while training in it (POSIX `flock`).

    Two processes resuming one run would train the same fits twice. The lock dies with its
    process, so a killed run never stays locked; we wait a little for one that is exiting.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    handle = open(Path(run_dir) / ".lock", "w")
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PipelineError(f"{run_dir} is in use by another running search; wait for it or stop it first") from None
                time.sleep(0.1)
        yield
    finally:
        handle.close()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` via a temporary file, fsync and rename: all or nothing."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def write_csv_atomic(frame, path: str | Path, **kwargs: Any) -> None:
    """Write a pandas DataFrame as CSV atomically."""
    write_text_atomic(path, frame.to_csv(index=False, **kwargs))


def save_figure_atomic(figure, path: str | Path, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG via a temporary file and a rename."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(handle)
    try:
        figure.savefig(temporary, dpi=dpi, format="png")
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


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


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays, paths and tuples as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
