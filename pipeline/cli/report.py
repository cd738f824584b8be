"""`python -m pipeline.report RUN_DIR`: rebuild report.md / report.html and the plots of a run
from its files alone (no TensorFlow, no retraining)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from ..review.report import write_report
from .common import command_parser


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("report", "rebuild a run's report from its files")
    parser.add_argument("run_dir", help="a search run folder, e.g. outputs/init_grid-20261121-232505")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    run_dir = Path(build_parser().parse_args(argv).run_dir)
    written = write_report(run_dir)
    print(f"wrote {written[0]} and {written[1]}")
    return 0
