"""`python -m pipeline.search`: config -> data -> estimator -> strategy -> results -> best model.

The strategies are scikit-learn's own searches (GridSearchCV, RandomizedSearchCV and the
successive-halving pair) over `PipelineClassifier`, with an explicit seeded
StratifiedKFold, `error_score=nan` (a failed candidate is recorded, not fatal) and
`refit=False`: the best candidate is refitted here, on the whole training split, and
scored once on the held-out test split.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .config import ExperimentConfig, load_config
from .data import Dataset, load_dataset
from .errors import PipelineError, run_cli
from .runs import create_run_dir, library_versions, utc_now, write_csv_atomic, write_json_atomic, write_text_atomic

DEFAULT_CONFIG = "configs/init_grid.yaml"
_CANDIDATE_ERROR = re.compile(r"CandidateFailed: \[candidate ([0-9a-f]{12})\] (.+)")


@dataclass(frozen=True)
class Plan:
    """How much work a search is: candidates (per halving round) and fits, refit included."""

    candidates: tuple[int, ...]
    folds: int

    @property
    def fits(self) -> int:
        return sum(self.candidates) * self.folds + 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.search", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help=f"YAML experiment (default: {DEFAULT_CONFIG}, the initializer grid)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set cv.folds=5 --set data.name=digits")
    parser.add_argument("--data", metavar="PATH", help="search on a local .npz file or folder of IDX files")
    parser.add_argument("--output-dir", help="where run folders go (default: output_dir of the config)")
    parser.add_argument("--dry-run", action="store_true", help="print the candidate and fit counts, then exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .train import cli_overrides

    args = build_parser().parse_args(argv)
    args.epochs = None
    config = load_config(_config_path(args.config), cli_overrides(args), search=True)
    plan = plan_search(config)
    if args.dry_run:
        rounds = f" over {len(plan.candidates)} halving rounds {list(plan.candidates)}" if len(plan.candidates) > 1 else ""
        print(f"{config.experiment}: {config.search.strategy} search, {sum(plan.candidates)} candidates{rounds} "
              f"x {plan.folds} folds + 1 refit = {plan.fits} fits")
        return 0
    dataset = load_dataset(config.data, config.seed)
    outcome = run_search(config, dataset, progress=not args.quiet)
    print("\n".join(outcome["summary"]))
    print(f"test accuracy of the refitted best model: {outcome['test_accuracy']:.4f} "
          f"({dataset.name}, {len(dataset.y_test)} test digits)")
    print(f"run folder: {outcome['run_dir']}")
    return 0


def _config_path(given: str | None) -> Path:
    if given:
        return Path(given)
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (base / DEFAULT_CONFIG).is_file():
            return base / DEFAULT_CONFIG
    raise PipelineError(f"no --config given and {DEFAULT_CONFIG} not found here; pass --config FILE")


# --- search space and strategy -------------------------------------------------------------------

def param_space(config: ExperimentConfig) -> list[dict[str, Any]]:
    """The config's space for scikit-learn: lists stay lists, distributions become scipy objects."""
    from scipy import stats

    def convert(spec):
        if not isinstance(spec, dict):
            return [tuple(v) if isinstance(v, list) else v for v in spec]
        kind, low, high = spec["distribution"], spec.get("low"), spec.get("high")
        if kind == "choice":
            return convert(spec["values"])
        if kind == "uniform":
            return stats.uniform(loc=low, scale=high - low)
        if kind == "loguniform":
            return stats.loguniform(low, high)
        return stats.randint(low, high + 1)  # randint bounds are inclusive in our configs

    return [{name: convert(spec) for name, spec in grid.items()} for grid in config.search.grids()]


def plan_search(config: ExperimentConfig) -> Plan:
    """Candidates per round without training anything (mirrors scikit-learn's halving schedule)."""
    from sklearn.model_selection import ParameterGrid

    space = config.search.grids()
    listed = all(not isinstance(v, dict) for grid in space for v in grid.values())
    n = len(ParameterGrid(param_space(config))) if listed else None
    if config.search.strategy in ("random", "halving-random"):
        n = min(config.search.n_iter, n) if n is not None else config.search.n_iter
    if not config.search.strategy.startswith("halving"):
        return Plan((n,), config.cv.folds)
    factor = config.search.factor
    if config.search.resource == "epochs":
        max_resources, min_resources = config.training.epochs, config.search.min_resources or 1
    else:  # n_samples: scikit-learn's defaults, assuming the configured training size
        max_resources = config.data.train_samples or 8000
        min_resources = config.search.min_resources or 2 * config.cv.folds * 10
    required = 1 + math.floor(math.log(n, factor))
    possible = 1 + math.floor(math.log(max(max_resources // min_resources, 1), factor))
    rounds, remaining = [], n
    for _ in range(min(required, possible)):
        rounds.append(remaining)
        remaining = math.ceil(remaining / factor)
    return Plan(tuple(rounds), config.cv.folds)


def build_estimator(config: ExperimentConfig, checkpoint_dir: Path | None = None):
    """`PipelineClassifier` holding the config's fixed settings under their routed names."""
    from .estimator import PipelineClassifier

    callbacks = config.callbacks
    fixed: dict[str, Any] = {f"model__{k}": v for k, v in config.model.model_dump().items()}
    fixed["model__hidden_layers"] = tuple(config.model.hidden_layers)
    fixed.update({f"optimizer__{k}": v for k, v in config.optimizer.kwargs().items()})
    fixed.update({f"lr_schedule__{k}": v for k, v in config.schedule.kwargs().items()})
    fixed.update({f"early_stopping__{k}": v for k, v in callbacks.early_stopping.kwargs().items()})
    fixed.update({f"checkpoint__{k}": v for k, v in callbacks.checkpoint.kwargs().items()})
    return PipelineClassifier(
        optimizer=config.optimizer.name,
        lr_schedule=config.schedule.name,
        early_stopping=callbacks.early_stopping.enabled,
        checkpoint=callbacks.checkpoint.enabled,
        checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
        terminate_on_nan=callbacks.terminate_on_nan,
        steps_per_execution=config.training.steps_per_execution,
        epochs=config.training.epochs,
        batch_size=config.training.batch_size,
        validation_split=config.data.validation_split,
        random_state=config.seed,
        **fixed,
    )


def build_search(config: ExperimentConfig, estimator, cv):
    """The configured scikit-learn search object (refit=False, error_score=nan, train scores kept)."""
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (registers the Halving* classes)
    from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV, HalvingRandomSearchCV, RandomizedSearchCV

    search = config.search
    space = param_space(config)
    common = dict(scoring=search.scoring or "accuracy", cv=cv, refit=False, error_score=np.nan,
                  return_train_score=True, n_jobs=1)
    halving = dict(resource=search.resource, factor=search.factor, random_state=config.seed,
                   min_resources=search.min_resources or "smallest")
    if search.resource == "epochs":
        halving["max_resources"] = config.training.epochs
    if search.strategy == "grid":
        return GridSearchCV(estimator, space, **common)
    if search.strategy == "random":
        return RandomizedSearchCV(estimator, space, n_iter=search.n_iter, random_state=config.seed, **common)
    if search.strategy == "halving-grid":
        return HalvingGridSearchCV(estimator, space, **common, **halving)
    return HalvingRandomSearchCV(estimator, space, n_candidates=search.n_iter, **common, **halving)


# --- running ------------------------------------------------------------------------------------

def check_folds(config: ExperimentConfig, dataset: Dataset) -> None:
    counts = np.bincount(dataset.y_train)
    smallest = int(counts[counts > 0].min())
    if config.cv.folds > smallest:
        label = int(np.flatnonzero(counts == smallest)[0])
        raise PipelineError(
            f"cv.folds={config.cv.folds} but class {label} has only {smallest} training samples; "
            "lower cv.folds or use more data (data.train_samples)"
        )


def run_search(config: ExperimentConfig, dataset: Dataset, progress: bool = True) -> dict[str, Any]:
    """Run the whole search and write the run folder; returns what `run.json` records plus the summary."""
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold

    from . import estimator as estimator_module
    from .persistence import save_model
    from .plots import save_history_plots
    from .results import best_params, cv_results_frame, summary_lines, tidy_results

    check_folds(config, dataset)
    plan = plan_search(config)
    started, clock = utc_now(), time.perf_counter()
    run_dir = create_run_dir(config.output_dir, config.experiment)
    write_text_atomic(run_dir / "config.yaml", config.to_yaml())
    checkpoint_dir = None
    if config.callbacks.checkpoint.enabled:
        checkpoint_dir = run_dir / "checkpoints"
        checkpoint_dir.mkdir()
    estimator = build_estimator(config, checkpoint_dir)
    cv = StratifiedKFold(n_splits=config.cv.folds, shuffle=config.cv.shuffle,
                         random_state=config.seed if config.cv.shuffle else None)
    search = build_search(config, estimator, cv)

    with _progress_bar(plan, enabled=progress) as tick, estimator_module.fit_listener(tick), \
            _fit_failure_reports() as failure_reports:
        try:
            search.fit(dataset.x_train, dataset.y_train)
        except ValueError as error:
            if "fits failed" not in str(error):
                raise
            reasons = _fit_errors([str(error)])
            raise PipelineError(f"every candidate failed, e.g. {next(iter(reasons.values()), str(error)[:200])}") from None

    cv_results = search.cv_results_
    reasons = _fit_errors(failure_reports)
    keys = [estimator_module.candidate_key(estimator, params) for params in cv_results["params"]]
    errors = {i: reasons[key] for i, key in enumerate(keys) if key in reasons}
    results = tidy_results(cv_results, errors)
    write_csv_atomic(results, run_dir / "results.csv")
    write_csv_atomic(cv_results_frame(cv_results), run_dir / "cv_results.csv")

    best = best_params(results, cv_results)
    best_estimator = estimator.set_params(**best)
    best_estimator.fit(dataset.x_train, dataset.y_train)
    test_accuracy = float(np.mean(best_estimator.predict(dataset.x_test) == dataset.y_test))
    history = pd.DataFrame(best_estimator.history_)
    history.insert(0, "epoch", range(len(history)))
    write_csv_atomic(history, run_dir / "history.csv")
    save_history_plots(history, run_dir)
    best_row = results.iloc[0]
    save_model(best_estimator.model_, run_dir / "best_model", {
        "task": "classification",
        "preprocessing": dataset.preprocessing,
        "classes": dataset.classes,
        "hyperparameters": {k: _plain(v) for k, v in best.items()},
        "scores": {"cv_mean": float(best_row["mean_test_score"]), "cv_std": float(best_row["std_test_score"]),
                   "test_accuracy": test_accuracy, "scoring": config.search.scoring or "accuracy"},
        "dataset": dataset.name,
    })
    summary = summary_lines(results, cv_results)
    failed = results[results["error"] != ""]
    outcome = {
        "kind": "search",
        "experiment": config.experiment,
        "strategy": config.search.strategy,
        "seed": config.seed,
        "dataset": dataset.summary(),
        "versions": library_versions(),
        "started": started,
        "finished": utc_now(),
        "wall_time_s": round(time.perf_counter() - clock, 2),
        "n_candidates": int(len(results)),
        "n_folds": config.cv.folds,
        "failed_candidates": {str(int(r["candidate"])): r["error"] for _, r in failed.iterrows()},
        "best_params": {k: _plain(v) for k, v in best.items()},
        "best_cv_score": float(best_row["mean_test_score"]),
        "test_accuracy": test_accuracy,
        "argv": sys.argv,
    }
    write_json_atomic(run_dir / "run.json", outcome)
    return {**outcome, "run_dir": str(run_dir), "summary": summary}


@contextmanager
def _progress_bar(plan: Plan, enabled: bool) -> Iterator:
    """A tqdm bar over candidate x fold fits (ETA included); silent when disabled or not a TTY."""
    from tqdm.auto import tqdm

    bar = tqdm(total=plan.fits - 1, unit="fit", desc="search", disable=not enabled or not sys.stderr.isatty(),
               dynamic_ncols=True, leave=True)
    try:
        yield lambda: bar.update(1)
    finally:
        bar.close()


def _fit_errors(messages: Sequence[str]) -> dict[str, str]:
    """candidate key -> reason, from scikit-learn's fit-failure reports."""
    reasons: dict[str, str] = {}
    for message in messages:
        for key, reason in _CANDIDATE_ERROR.findall(message):
            reasons.setdefault(key, reason.strip())
    return reasons


@contextmanager
def _fit_failure_reports() -> Iterator[list[str]]:
    """Collect scikit-learn's FitFailedWarning texts (they become the error column) instead of printing them.

    Every other warning is shown as usual.
    """
    from sklearn.exceptions import FitFailedWarning

    reports: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always", FitFailedWarning)
        warnings.filterwarnings("ignore", message="One or more of the .* scores are non-finite")
        show = warnings.showwarning

        def collect(message, category, *args, **kwargs):
            if issubclass(category, FitFailedWarning):
                reports.append(str(message))
            else:
                show(message, category, *args, **kwargs)

        warnings.showwarning = collect
        yield reports


def _plain(value: Any) -> Any:
    """numpy scalars and tuples as plain JSON values."""
    if isinstance(value, tuple):
        return list(value)
    return value.item() if hasattr(value, "item") else value


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
