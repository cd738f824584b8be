"""The one exception type for problems in the user's input, and the CLI wrapper that reports it.

Every bad input (config, data file, model folder, image) raises `PipelineError` with a
message naming the problem and the fix. Command-line entry points run through `run_cli`,
which prints that message as a single line and exits with code 2: no traceback. A full
disk or a folder that cannot be written is reported the same way (`storage_problem`); a run
that failed for its own settings (`RunFailed`) is one line with exit code 1.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Callable, Sequence

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class PipelineError(Exception):
    """A problem the user can fix: bad config, missing or corrupt file, wrong image shape."""


class RunFailed(RuntimeError):
    """A run that ended without a result because of its own settings (training diverged, every
    candidate failed), recorded in its folder: one line and exit code 1 (`run_cli`)."""


# Storage conditions a user fixes outside the program, with the fix to print.
STORAGE_FIXES = {
    errno.ENOSPC: "free disk space",
    errno.EDQUOT: "free space within your disk quota",
    errno.EROFS: "choose a folder on a writable file system",
    errno.EACCES: "choose a folder you may write to, or fix its permissions",
    errno.EPERM: "choose a folder you may write to, or fix its permissions",
}


def storage_problem(error: BaseException) -> str | None:
    """'cannot write PATH (reason); fix' for a full disk, quota, read-only or forbidden folder, else None.

    HDF5 reports a full disk in its message rather than in `errno`, hence the text match.
    """
    if not isinstance(error, OSError):
        return None
    code = error.errno if error.errno in STORAGE_FIXES else (errno.ENOSPC if "No space left" in str(error) else None)
    if code is None:
        return None
    where = f" {error.filename}" if error.filename else ""
    return f"cannot write{where} ({os.strerror(code)}); {STORAGE_FIXES[code]}"


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a CLI `main`, turning `PipelineError` (and storage errors) into one line on stderr and
    exit code 2, `RunFailed` into one line and exit code 1."""
    try:
        return main(argv)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:
        problem = storage_problem(error)
        if problem is None:
            raise
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
