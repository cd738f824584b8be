"""`python -m pipeline.train`: train one model from a config and write a run folder.

config -> dataset (the one really used is recorded) -> run folder -> seeded model -> fit with
the configured callbacks -> test score -> saved model, history.csv, plots and run.json.
Everything that can be wrong with the input is checked before the run folder is created.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .config import ExperimentConfig, load_config
from .data import Dataset, load_dataset, split_validation
from .errors import run_cli
from .runs import create_run_dir, library_versions, utc_now, write_json_atomic, write_text_atomic


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML experiment file, e.g. configs/train_sgd_time_decay.yaml")
    parser.add_argument("--epochs", type=int, help="override training.epochs")
    parser.add_argument("--data", metavar="PATH", help="train on a local .npz file or folder of IDX files")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set optimizer.learning_rate=0.05 (repeatable)")
    parser.add_argument("--output-dir", help="where run folders go (default: output_dir of the config)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch output")
    return parser


def cli_overrides(args: argparse.Namespace) -> list[str]:
    """The command-line flags as `--set`-style overrides, applied before validation."""
    overrides = list(args.overrides)
    if getattr(args, "epochs", None) is not None:  # pipeline.search has no --epochs
        overrides.append(f"training.epochs={args.epochs}")
    if args.data:
        overrides += ["data.name=file", f"data.path={args.data}"]
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    if getattr(args, "backend", None):  # pipeline.search only
        overrides.append(f"search.backend={args.backend}")
    if getattr(args, "scheduler", None):
        overrides += [f"search.scheduler={args.scheduler}"] + ([] if args.backend else ["search.backend=dask"])
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = load_config(args.config, cli_overrides(args))
    dataset = load_dataset(config.data, config.seed)
    result = train_model(config, dataset, verbose=0 if args.quiet else 2)
    print(f"run folder: {result['run_dir']}")
    print(f"dataset:    {dataset.name} ({len(dataset.y_train)} train / {len(dataset.y_test)} test)")
    print(f"epochs:     {result['epochs_run']} of {config.training.epochs}")
    print(f"test:       accuracy {result['test_accuracy']:.4f}, loss {result['test_loss']:.4f}")
    return 0


def train_model(config: ExperimentConfig, dataset: Dataset, verbose: int = 0) -> dict[str, Any]:
    """Train one model as configured; returns the summary that run.json records."""
    import pandas as pd

    from ._tf import set_seed
    from .callbacks import make_callbacks
    from .models import build_model
    from .persistence import save_model
    from .plots import save_history_plots

    started, clock = utc_now(), time.perf_counter()
    (x_fit, y_fit), validation = split_validation(
        dataset.x_train, dataset.y_train, config.data.validation_split, config.seed
    )
    run_dir = create_run_dir(config.output_dir, config.experiment)
    write_text_atomic(run_dir / "config.yaml", config.to_yaml())
    set_seed(config.seed)
    model = build_model(
        n_features=dataset.x_train.shape[1],
        n_outputs=len(dataset.classes),
        **config.model.model_dump(),
        optimizer=config.optimizer.name,
        **config.optimizer.kwargs(),
        steps_per_execution=config.training.steps_per_execution,
    )
    callbacks_config = config.callbacks
    callbacks = make_callbacks(
        lr_schedule=config.schedule.name,
        schedule_params=config.schedule.kwargs(),
        early_stopping=callbacks_config.early_stopping.kwargs() if callbacks_config.early_stopping.enabled else None,
        checkpoint=callbacks_config.checkpoint.kwargs() if callbacks_config.checkpoint.enabled else None,
        checkpoint_path=run_dir / "checkpoint.weights.h5",
        terminate_on_nan=callbacks_config.terminate_on_nan,
        history_csv=run_dir / "history.csv",
    )
    fit = model.fit(
        x_fit, y_fit,
        validation_data=validation,
        epochs=config.training.epochs,
        batch_size=config.training.batch_size,
        callbacks=callbacks,
        verbose=verbose,
    )
    test_loss, test_accuracy = model.evaluate(dataset.x_test, dataset.y_test, verbose=0, batch_size=1024)
    history = pd.read_csv(run_dir / "history.csv")
    summary = {
        "run_dir": str(run_dir),
        "epochs_run": len(fit.history["loss"]),
        "test_loss": float(test_loss),
        "test_accuracy": float(test_accuracy),
        "final": {key: float(values[-1]) for key, values in fit.history.items()},
    }
    save_model(model, run_dir / "model", {
        "task": "classification",
        "preprocessing": dataset.preprocessing,
        "classes": dataset.classes,
        "hyperparameters": {"model": config.model.model_dump(), "optimizer": config.optimizer.model_dump()},
        "scores": {"test_accuracy": summary["test_accuracy"], "test_loss": summary["test_loss"]},
        "dataset": dataset.name,
    })
    save_history_plots(history, run_dir)
    write_json_atomic(run_dir / "run.json", {
        "kind": "train",
        "experiment": config.experiment,
        "seed": config.seed,
        "dataset": {**dataset.summary(), "n_fit": int(len(y_fit)), "n_validation": int(len(validation[1])) if validation else 0},
        "versions": library_versions(),
        "started": started,
        "finished": utc_now(),
        "wall_time_s": round(time.perf_counter() - clock, 2),
        **{k: v for k, v in summary.items() if k != "run_dir"},
        "argv": sys.argv,
    })
    return summary


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
