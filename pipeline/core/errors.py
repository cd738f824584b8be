"""The one exception type for problems in the user's input, and the CLI wrapper that reports it.

Every bad input (config, data file, model folder, image) raises `PipelineError` with a
message naming the problem and the fix. Command-line entry points run through `run_cli`,
which prints that message as a single line and exits with code 2: no traceback.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class PipelineError(Exception):
    """A problem the user can fix: bad config, missing or corrupt file, wrong image shape."""


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a CLI `main`, turning `PipelineError` into one line on stderr and exit code 2."""
    try:
        return main(argv)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
