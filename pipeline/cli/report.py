"""`python -m pipeline.report RUN_DIR [--tensorboard]`: rebuild report.md / report.html and the
plots of a run (and, asked, its TensorBoard folder) from its files alone (no TensorFlow, no retraining)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from ..review.report import write_report
from ..review.tensorboard_export import write_tensorboard
from .common import command_parser


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("report", "rebuild a run's report from its files")
    parser.add_argument("run_dir", help="a search run folder, e.g. outputs/init_grid-20261121-232505")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also (re)write RUN_DIR/tensorboard, the fits for TensorBoard's HParams dashboard")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_dir = Path(args.run_dir)
    written = write_report(run_dir)
    print(f"wrote {written[0]} and {written[1]}")
    if args.tensorboard:
        print(f"wrote {write_tensorboard(run_dir)}; view it with: tensorboard --logdir {run_dir / 'tensorboard'}")
    return 0
