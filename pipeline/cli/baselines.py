"""`python -m pipeline.baselines random-weights --dataset vertical`: gradient-free weight search vs. training.

Runs `pipeline.training.baselines` and writes improvements.csv (every improvement of each
method) and loss_vs_iteration.png into a new run folder.
"""

from __future__ import annotations

import argparse
from typing import Sequence

import pandas as pd

from ..core.errors import PipelineError
from ..core.files import create_run_dir, save_figure_atomic, write_csv_atomic
from ..data import load_dataset
from ..review.plots import plot_loss_vs_iteration
from ..spec.config import DataConfig
from ..training.baselines import run_study
from .common import command_parser

TOY_DATASETS = ("vertical", "spiral")


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("baselines", __doc__.splitlines()[0])
    parser.add_argument("study", choices=["random-weights"], help="which baseline study to run")
    parser.add_argument("--dataset", default="vertical", choices=TOY_DATASETS)
    parser.add_argument("--iterations", type=int, default=10_000, help="loss evaluations (gradient steps) per method")
    parser.add_argument("--scale", type=float, default=0.05, help="std of the random weights and perturbations")
    parser.add_argument("--optimizer", default="adam", choices=["adam", "sgd"], help="for the gradient method")
    parser.add_argument("--learning-rate", type=float, default=0.02)
    parser.add_argument("--hidden", type=int, default=3, help="hidden units (the seed uses 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="outputs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.iterations < 1 or args.scale <= 0 or args.learning_rate <= 0 or args.hidden < 1:
        raise PipelineError("--iterations, --hidden, --scale and --learning-rate must be positive")
    data = load_dataset(DataConfig(name=args.dataset, validation_split=0.0), args.seed)
    x, y = data.x_train, data.y_train
    run_dir = create_run_dir(args.output_dir, f"baselines-{args.dataset}")
    logs = run_study(x, y, args.iterations, args.scale, args.optimizer, args.learning_rate, args.hidden, args.seed)
    improvements = pd.concat([log.assign(method=method) for method, log in logs.items()], ignore_index=True)
    improvements = improvements[["method", "iteration", "loss", "accuracy", "seconds"]]
    write_csv_atomic(improvements, run_dir / "improvements.csv")
    save_figure_atomic(plot_loss_vs_iteration(improvements, args.iterations, args.dataset), run_dir / "loss_vs_iteration.png")
    print(f"{args.dataset}: {len(y)} points, 2-{args.hidden}-3 network, {args.iterations} loss evaluations per method")
    for method, log in logs.items():
        last = log.iloc[-1]
        print(f"  {method:<15} best loss {last['loss']:.4f}, accuracy {last['accuracy']:.3f} "
              f"({len(log)} improvements, {last['seconds']:.2f} s)")
    print(f"run folder: {run_dir}")
    return 0
