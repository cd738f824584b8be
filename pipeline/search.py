"""`python -m pipeline.search`: config -> data -> estimator -> strategy -> results -> best model.

The strategies are scikit-learn's own searches (GridSearchCV, RandomizedSearchCV and the
successive-halving pair) over `PipelineClassifier` (`PipelineRegressor` for regression), with
an explicit seeded StratifiedKFold (KFold for regression), every fit journaled (a failed
candidate is recorded, not fatal) and `refit=False`: the best candidate is refitted here, on
the whole training split, and scored once on the held-out test split. The CLI trains in
worker processes under `pipeline.supervisor`; `run_search` is the in-process core.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .config import ExperimentConfig, load_config
from .data import Dataset, load_dataset, task_of
from .errors import EXIT_INTERRUPTED, PipelineError, run_cli
from .runs import create_run_dir, library_versions, utc_now, write_csv_atomic, write_json_atomic, write_text_atomic

DEFAULT_CONFIG = "configs/init_grid.yaml"


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
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or interrupted run in its folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--backend", choices=["local", "dask"],
                        help="where fits train: this machine (default) or a Dask cluster (search.backend)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="Dask scheduler, e.g. tcp://host:8786 (implies --backend dask; without it a local cluster)")
    parser.add_argument("--worker", metavar="RUN_DIR", help=argparse.SUPPRESS)  # started by the supervisor
    parser.add_argument("--max-fits", type=int, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .train import cli_overrides

    args = build_parser().parse_args(argv)
    if args.worker:
        return _work(Path(args.worker), args.max_fits)
    given = None
    if args.config or cli_overrides(args) or not args.resume:
        given = load_config(_config_path(args.config, args.resume), cli_overrides(args), search=True)
    if args.resume:
        run_dir = Path(args.resume)
        config, dataset = resume_run(run_dir, given)
    else:
        config = given
    plan = plan_search(config)
    if args.dry_run:
        rounds = f" over {len(plan.candidates)} halving rounds {list(plan.candidates)}" if len(plan.candidates) > 1 else ""
        print(f"{config.experiment}: {config.search.strategy} search, {sum(plan.candidates)} candidates{rounds} "
              f"x {plan.folds} folds + 1 refit = {plan.fits} fits")
        return 0
    if not args.resume:
        if config.search.backend == "dask" and config.search.scheduler:
            _check_scheduler(config.search.scheduler)  # before the run folder exists: nothing half-made
        dataset = load_dataset(config.data, config.seed)
        run_dir = start_run(config, dataset)
    if (config.search.fits_per_process == 0 or plan.fits - 1 <= config.search.fits_per_process
            or config.search.backend == "dask"):  # no recycling needed (or Dask's workers train): spare a start-up
        return _run_here(config, dataset, run_dir, progress=not args.quiet)
    from .supervisor import supervise

    return supervise(run_dir, plan.fits - 1, config.search.fits_per_process, progress=not args.quiet)


def _work(run_dir: Path, max_fits: int | None) -> int:
    """A worker process of the supervisor: resume the run, train at most `max_fits` new fits."""
    from .estimator import RecycleWorker, limit_new_fits
    from .supervisor import EXIT_RECYCLE, exit_with_parent

    exit_with_parent()
    config, dataset = resume_run(run_dir, None)
    limit_new_fits(max_fits, config.search.max_memory_growth)
    try:
        return _run_here(config, dataset, run_dir, progress=False)
    except RecycleWorker:
        return EXIT_RECYCLE


def _run_here(config: ExperimentConfig, dataset: Dataset, run_dir: Path, progress: bool) -> int:
    """Run the search in this process and print the tutorial-style summary."""
    from .callbacks import graceful_interrupt
    from .estimator import SearchAborted
    from .runs import lock_run

    try:
        with lock_run(run_dir), graceful_interrupt():
            outcome = run_search(config, dataset, run_dir, progress=progress)
    except KeyboardInterrupt:
        mark_run(run_dir, "interrupted")
        print(f"\ninterrupted: finished fits are kept in {run_dir}/journal.jsonl; continue with\n"
              f"  python -m pipeline.search --resume {run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SearchAborted as error:
        mark_run(run_dir, "aborted", reason=str(error))
        print(f"error: search aborted: {error}; fix the config (or raise search.max_consecutive_failures) "
              f"and start a new run", file=sys.stderr)
        return 1
    print("\n".join(outcome["summary"]))
    failed = outcome["failed_candidates"]
    if failed:
        print(f"{len(failed)} failed candidate(s):")
        for candidate, reason in failed.items():
            print(f"  candidate {candidate}: {reason}")
    scores = ", ".join(f"{name} {value:.4f}" for name, value in outcome["test_scores"].items())
    print(f"test {scores} of the refitted best model ({dataset.name}, {len(dataset.y_test)} test samples)")
    print(f"run folder: {run_dir} (report: {run_dir}/report.html)")
    return 0


def _config_path(given: str | None, resume: str | None = None) -> Path:
    if given:
        return Path(given)
    if resume:
        return Path(resume) / "config.yaml"
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (base / DEFAULT_CONFIG).is_file():
            return base / DEFAULT_CONFIG
    raise PipelineError(f"no --config given and {DEFAULT_CONFIG} not found here; pass --config FILE")


# --- search space and strategy -------------------------------------------------------------------

def param_space(config: ExperimentConfig) -> list[dict[str, Any]]:
    """The config's space for scikit-learn: lists stay lists, distributions become scipy objects."""
    def convert(spec):
        if not isinstance(spec, dict):
            return [tuple(v) if isinstance(v, list) else v for v in spec]
        from scipy import stats  # only for distributions: a slow import

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
    from .estimator import PipelineClassifier, PipelineRegressor
    from .towers import PREDICT_BATCH

    callbacks = config.callbacks
    fixed: dict[str, Any] = {f"model__{k}": v for k, v in config.model.model_dump().items()}
    fixed["model__hidden_layers"] = tuple(config.model.hidden_layers)
    fixed.update({f"optimizer__{k}": v for k, v in config.optimizer.kwargs().items()})
    fixed.update({f"lr_schedule__{k}": v for k, v in config.schedule.kwargs().items()})
    fixed.update({f"early_stopping__{k}": v for k, v in callbacks.early_stopping.kwargs().items()})
    fixed.update({f"checkpoint__{k}": v for k, v in callbacks.checkpoint.kwargs().items()})
    wrapper = PipelineRegressor if task_of(config.data.name) == "regression" else PipelineClassifier
    return wrapper(
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
        reuse_models=True,
        predict__batch_size=PREDICT_BATCH,
        **fixed,
    )


def build_search(config: ExperimentConfig, estimator, cv):
    """The configured scikit-learn search object (refit=False, error_score=nan, train scores kept)."""
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (registers the Halving* classes)
    from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV, HalvingRandomSearchCV, RandomizedSearchCV

    from .estimator import JournalScorer
    from .fusion import fusing

    search = config.search
    space = param_space(config)
    common = dict(scoring=JournalScorer(scoring_metrics(config), train_scores=True), cv=cv, refit=False,
                  error_score=np.nan, return_train_score=True, n_jobs=1)
    halving = dict(resource=search.resource, factor=search.factor, random_state=config.seed,
                   min_resources=search.min_resources or "smallest")
    if search.resource == "epochs":
        halving["max_resources"] = config.training.epochs
    classes = {"grid": GridSearchCV, "random": RandomizedSearchCV,
               "halving-grid": HalvingGridSearchCV, "halving-random": HalvingRandomSearchCV}
    fused = search.fuse or search.backend == "dask"  # on Dask every fit is a job of pipeline.fusion
    search_class = fusing(classes[search.strategy]) if fused else classes[search.strategy]
    if search.strategy == "grid":
        built = search_class(estimator, space, **common)
    elif search.strategy == "random":
        built = search_class(estimator, space, n_iter=search.n_iter, random_state=config.seed, **common)
    elif search.strategy == "halving-grid":
        built = search_class(estimator, space, **common, **halving)
    else:
        built = search_class(estimator, space, n_candidates=search.n_iter, **common, **halving)
    if fused:
        built.max_towers = search.max_towers if search.fuse else 1
        built.group_jobs = group_jobs(config)
    return built


def group_jobs(config: ExperimentConfig) -> int:
    """Worker processes for fused groups: `search.n_jobs`, by default one per core."""
    from .fusion import available_cores

    return config.search.n_jobs or available_cores()


def scoring_metrics(config: ExperimentConfig) -> dict[str, str]:
    """Metric name -> scikit-learn scorer, primary first: accuracy for classes; negative MSE and R^2
    for regression (halving, which ranks by one score only, gets the primary alone)."""
    if task_of(config.data.name) == "classification":
        primary = config.search.scoring or "accuracy"
        return {primary: primary}
    primary = config.search.scoring or "neg_mean_squared_error"
    metrics = {primary: primary}
    if primary != "r2" and not config.search.strategy.startswith("halving"):
        metrics["r2"] = "r2"
    return metrics


# --- running ------------------------------------------------------------------------------------

def check_folds(config: ExperimentConfig, dataset: Dataset) -> None:
    if dataset.task != "classification":
        if config.cv.folds > len(dataset.y_train):
            raise PipelineError(f"cv.folds={config.cv.folds} but only {len(dataset.y_train)} training samples; lower cv.folds")
        return
    counts = np.bincount(dataset.y_train)
    smallest = int(counts[counts > 0].min())
    if config.cv.folds > smallest:
        label = int(np.flatnonzero(counts == smallest)[0])
        raise PipelineError(
            f"cv.folds={config.cv.folds} but class {label} has only {smallest} training samples; "
            "lower cv.folds or use more data (data.train_samples)"
        )


def start_run(config: ExperimentConfig, dataset: Dataset) -> Path:
    """Create the run folder (exclusively) with the resolved config and the run's identity."""
    check_folds(config, dataset)
    run_dir = create_run_dir(config.output_dir, config.experiment)
    write_text_atomic(run_dir / "config.yaml", config.to_yaml())
    write_json_atomic(run_dir / "run.json", {
        "kind": "search", "status": "running", "experiment": config.experiment, "started": utc_now(),
        "identity": run_identity(config, dataset), "dataset": dataset.summary(), "versions": library_versions(),
    })
    return run_dir


def load_run_dataset(run_dir: Path) -> tuple[ExperimentConfig, Dataset]:
    """A run's saved config and the dataset it really used: a run that fell back to
    `mnist-sample` gets `mnist-sample` again, even if full MNIST has become available since."""
    for name in ("config.yaml", "run.json"):
        if not (run_dir / name).is_file():
            raise PipelineError(f"{run_dir}: {name} is missing; give a run folder written by pipeline.search")
    saved = load_config(run_dir / "config.yaml", search=True)
    recorded = _read_run(run_dir).get("identity", {})
    data_config = saved.data
    if saved.data.name == "mnist" and str(recorded.get("data", "")).startswith("mnist-sample:"):
        data_config = saved.data.model_copy(update={"name": "mnist-sample"})
    return saved, load_dataset(data_config, saved.seed)


def resume_run(run_dir: Path, config: ExperimentConfig | None) -> tuple[ExperimentConfig, Dataset]:
    """The saved config and data of `run_dir`, after checking that nothing it depends on has changed."""
    if not run_dir.is_dir():
        raise PipelineError(f"--resume {run_dir}: no such run folder; give outputs/<run> of an earlier search")
    saved, dataset = load_run_dataset(run_dir)
    if config is not None and config != saved:
        key = _first_difference(saved.model_dump(mode="json"), config.model_dump(mode="json"))
        raise PipelineError(
            f"--resume {run_dir}: the given config differs from the run's config.yaml at {key}; "
            "resume without --config/--set, or start a new run"
        )
    recorded = _read_run(run_dir).get("identity", {})
    current = run_identity(saved, dataset)
    for part, what in (("data", "dataset"), ("code", "code version")):
        if recorded.get(part) != current[part]:
            raise PipelineError(
                f"--resume {run_dir}: the {what} differs from the one the run started with "
                f"({recorded.get(part)} != {current[part]}); start a new run"
            )
    return saved, dataset


def run_search(config: ExperimentConfig, dataset: Dataset, run_dir: Path | None = None,
               progress: bool = True) -> dict[str, Any]:
    """Run (or, in an existing run folder, resume) the search; write results, best model and run.json."""
    import pandas as pd
    from sklearn.model_selection import KFold, StratifiedKFold

    from . import estimator as estimator_module
    from .journal import JOURNAL_NAME, JournalProgress, read_journal, repair_journal
    from .persistence import save_model
    from .report import write_report
    from .results import (best_params, best_row, cv_results_frame, fit_histories, journal_columns, primary_view,
                          summary_lines, tidy_results)

    run_dir = run_dir or start_run(config, dataset)
    journal_path = run_dir / JOURNAL_NAME
    repair_journal(journal_path)
    clock = time.perf_counter()  # this process only; wall_time_s spans the whole run (all workers)
    checkpoint_dir = None
    if config.callbacks.checkpoint.enabled:
        checkpoint_dir = run_dir / "checkpoints"
        checkpoint_dir.mkdir(exist_ok=True)
    estimator = build_estimator(config, checkpoint_dir).set_params(
        journal_path=str(journal_path), max_consecutive_failures=config.search.max_consecutive_failures)
    splitter = StratifiedKFold if dataset.task == "classification" else KFold
    cv = splitter(n_splits=config.cv.folds, shuffle=config.cv.shuffle,
                  random_state=config.seed if config.cv.shuffle else None)
    search = build_search(config, estimator, cv)
    with JournalProgress(journal_path, plan_search(config).fits - 1, enabled=progress), _quiet_fit_failures(), \
            _backend(config, search):
        search.fit(dataset.x_train, dataset.y_train)

    primary, *extra_metrics = scoring_metrics(config)
    cv_results = primary_view(search.cv_results_, primary) if extra_metrics else search.cv_results_
    keys = [estimator_module.candidate_key(estimator, params) for params in cv_results["params"]]
    records = read_journal(journal_path)
    results = tidy_results(cv_results, **journal_columns(records, keys), extra_metrics=extra_metrics)
    write_csv_atomic(results, run_dir / "results.csv")
    write_csv_atomic(cv_results_frame(search.cv_results_), run_dir / "cv_results.csv")
    write_csv_atomic(fit_histories(records, keys), run_dir / "fit_histories.csv")

    if results["mean_test_score"].isna().all():
        raise PipelineError(f"every candidate failed, e.g. {results['error'].iloc[0]}; see {run_dir}/results.csv")
    chosen = best_row(results)  # for halving: the best of the last round, not necessarily rank 1
    best = best_params(results, cv_results)
    best_estimator = estimator.set_params(journal_path=None, **best)
    best_estimator.fit(dataset.x_train, dataset.y_train)
    test_scores = _test_scores(best_estimator, dataset, run_dir)
    history = pd.DataFrame(best_estimator.history_)
    history.insert(0, "epoch", range(len(history)))
    write_csv_atomic(history, run_dir / "history.csv")
    save_model(best_estimator.model_, run_dir / "best_model", {
        "task": dataset.task,
        "preprocessing": dataset.preprocessing,
        "classes": dataset.classes,
        "hyperparameters": {k: _plain(v) for k, v in best.items()},
        "scores": {"cv_mean": float(chosen["mean_test_score"]), "cv_std": float(chosen["std_test_score"]),
                   "scoring": primary, **{f"test_{k}": v for k, v in test_scores.items()}},
        "dataset": dataset.name,
    })
    failed = results[results["error"] != ""]
    started = _read_run(run_dir)
    outcome = {
        **started,
        "status": "finished",
        "strategy": config.search.strategy,
        "seed": config.seed,
        "finished": utc_now(),
        "wall_time_s": _seconds_since(started.get("started")),
        "this_process_s": round(time.perf_counter() - clock, 2),
        "n_candidates": int(len(results)),
        "n_folds": config.cv.folds,
        "scoring": primary,
        "failed_candidates": {str(int(r["candidate"])): r["error"] for _, r in failed.iterrows()},
        "backend": {"name": config.search.backend, "scheduler": config.search.scheduler},
        "fusing": {"enabled": config.search.fuse, "max_towers": config.search.max_towers, "n_jobs": group_jobs(config),
                   "fused_candidates": sorted(int(c) for c in results.loc[results["fused_towers"] > 0, "candidate"])},
        "best_params": {k: _plain(v) for k, v in best.items()},
        "best_cv_score": float(chosen["mean_test_score"]),
        "test_scores": test_scores,
        **({"test_accuracy": test_scores["accuracy"]} if "accuracy" in test_scores else {}),
        "argv": sys.argv,
    }
    write_json_atomic(run_dir / "run.json", outcome)
    write_report(run_dir)
    return {**outcome, "run_dir": str(run_dir), "summary": summary_lines(results, cv_results)}


def _test_scores(estimator, dataset: Dataset, run_dir: Path) -> dict[str, float]:
    """The refitted best model on the held-out test split (and its confusion matrix, for classes)."""
    import pandas as pd
    from sklearn.metrics import confusion_matrix, mean_squared_error, r2_score

    predicted = estimator.predict(dataset.x_test)
    if dataset.task == "regression":
        return {"mse": float(mean_squared_error(dataset.y_test, predicted)), "r2": float(r2_score(dataset.y_test, predicted))}
    confusion = pd.DataFrame(confusion_matrix(dataset.y_test, predicted, labels=dataset.classes),
                             index=pd.Index(dataset.classes, name="true"), columns=dataset.classes)
    write_csv_atomic(confusion.reset_index(), run_dir / "confusion_matrix.csv")
    return {"accuracy": float(np.mean(predicted == dataset.y_test))}


def mark_run(run_dir: Path, status: str, **fields: Any) -> None:
    """Record in run.json how a run ended when it did not finish (interrupted, aborted)."""
    write_json_atomic(run_dir / "run.json", {**_read_run(run_dir), "status": status, "stopped": utc_now(), **fields})


def run_identity(config: ExperimentConfig, dataset: Dataset) -> dict[str, Any]:
    """What a resumed run must share with the original: config, data and code."""
    import hashlib

    from .journal import data_key

    source = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        source.update(path.read_bytes())
    versions = library_versions()
    return {
        "config": hashlib.sha256(config.to_yaml().encode()).hexdigest()[:12],
        "data": f"{dataset.name}:{data_key(dataset.x_train, dataset.y_train)}:{data_key(dataset.x_test, dataset.y_test)}",
        "code": {"pipeline_source": source.hexdigest()[:12],
                 **{k: versions.get(k) for k in ("pipeline", "keras", "scikeras", "scikit-learn")}},
    }


def _seconds_since(started: str | None) -> float | None:
    """Seconds from an ISO timestamp (run.json's `started`) until now."""
    from datetime import datetime, timezone

    if not started:
        return None
    return round((datetime.now(timezone.utc) - datetime.fromisoformat(started)).total_seconds(), 1)


def _read_run(run_dir: Path) -> dict[str, Any]:
    import json

    path = run_dir / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
    return f"{prefix.rstrip('.')} ({a!r} in the run, {b!r} given)"


def _check_scheduler(address: str) -> None:
    """Connect to the Dask scheduler once and check the cluster (errors are one line)."""
    from .cluster import dask_client

    with dask_client(address, cores=0):
        pass


@contextmanager
def _backend(config: ExperimentConfig, search) -> Iterator[None]:
    """For `search.backend: dask`: a cluster connection for the search's fits, closed afterwards."""
    if config.search.backend != "dask":
        yield
        return
    from .cluster import DaskRunner, dask_client
    from .fusion import available_cores

    with dask_client(config.search.scheduler, available_cores()) as client:
        search.runner = DaskRunner(client)
        yield


@contextmanager
def _quiet_fit_failures() -> Iterator[None]:
    """Failed fits are reported in results.csv's error column, not as scikit-learn's long warnings."""
    from sklearn.exceptions import FitFailedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitFailedWarning)
        warnings.filterwarnings("ignore", message="One or more of the .* scores are non-finite")
        yield


def _plain(value: Any) -> Any:
    """numpy scalars and tuples as plain JSON values."""
    if isinstance(value, tuple):
        return list(value)
    return value.item() if hasattr(value, "item") else value


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
