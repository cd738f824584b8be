"""`python -m pipeline.compare RUN_DIR RUN_DIR ...`: several runs' leaderboards side by side.

One column per run, one row per rank; a summary table above it gives each run's dataset, best
CV score and test scores. `--out FILE.csv` writes the side-by-side table. Reads result files only.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from ..core.errors import PipelineError
from ..core.files import write_csv_atomic
from ..review.compare import compare_leaderboards, summary_table
from ..review.report import RunFiles
from .common import check_output_file, command_parser


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("compare", "several runs' leaderboards side by side")
    parser.add_argument("run_dirs", nargs="+", help="search run folders, e.g. outputs/init_grid-*")
    parser.add_argument("--top", type=int, default=10, help="ranks to show (default 10)")
    parser.add_argument("--out", help="write the side-by-side leaderboard to this CSV file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.top <= 0:
        raise PipelineError(f"--top {args.top}: give a positive number of ranks")
    check_output_file(args.out)
    runs = [RunFiles(Path(path)) for path in args.run_dirs]
    print(summary_table(runs).to_string(index=False))
    print()
    side_by_side = compare_leaderboards(runs, args.top)
    print(side_by_side.to_string(index=False))
    if args.out:
        write_csv_atomic(side_by_side, args.out)
        print(f"\nwrote {args.out}")
    return 0
