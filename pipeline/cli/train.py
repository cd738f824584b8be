"""`python -m pipeline.train --config FILE`: train one model from a config and write a run folder.

config -> dataset (the one really used is recorded) -> run folder -> seeded model -> fit with
the configured callbacks -> test scores -> saved model, history.csv, plots and run.json.
Everything that can be wrong with the input is checked before the run folder is created.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from ..data import load_dataset
from ..spec.config import load_config
from .common import add_config_flags, cli_overrides, command_parser


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("train", __doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML experiment file, e.g. configs/train_sgd_time_decay.yaml")
    parser.add_argument("--epochs", type=int, help="override training.epochs")
    add_config_flags(parser)
    parser.add_argument("--quiet", action="store_true", help="no per-epoch output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ..training.single import train_model

    args = build_parser().parse_args(argv)
    config = load_config(args.config, cli_overrides(args))
    dataset = load_dataset(config.data, config.seed)
    result = train_model(config, dataset, verbose=0 if args.quiet else 2)  # divergence: RunFailed, exit 1
    scores = ", ".join(f"{name.removeprefix('test_')} {value:.4f}" for name, value in result.items()
                       if name.startswith("test_"))
    print(f"run folder: {result['run_dir']}")
    print(f"dataset:    {dataset.name} ({len(dataset.y_train)} train / {len(dataset.y_test)} test, {dataset.task})")
    print(f"epochs:     {result['epochs_run']} of {config.training.epochs}")
    print(f"test:       {scores}")
    return 0
