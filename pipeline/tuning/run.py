"""`run_search`: config + data -> trained and recorded fits -> results -> refitted best model -> report.

The strategies are scikit-learn's own searches over `PipelineClassifier` (`PipelineRegressor`
for regression), with seeded folds, every fit trained first and recorded by the session
(`pipeline.tuning.session`), replayed by scikit-learn's loop, and `refit=False`: the best
candidate is refitted here, on the whole training split, and scored once on the held-out
test split. Usable as a library (`pipeline.run_search`); the command line adds worker
processes and the run lock (`pipeline.cli.search`).
"""

from __future__ import annotations

import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


from ..core.errors import PipelineError
from ..core.files import read_json, seconds_since, utc_now, write_csv_atomic
from ..data import Dataset
from ..spec.config import ExperimentConfig
from ..spec.vocabulary import CHECKPOINT, EARLY_STOPPING, NETWORK, OPTIMIZER, SCHEDULE
from .lifecycle import start_run, update_run
from .pruning import CpuBudget
from .records import plain_value
from .session import EveryCandidateFailed, FitBudget, SearchSession, TrainFirst
from .store import JOURNAL_NAME, JournalProgress, read_incidents
from .strategies import RecordScorer, build_search, count_fits, make_cv, scoring_metrics


def build_estimator(config: ExperimentConfig, task: str, *, context=None, replay_from=None,
                    checkpoint_dir: Path | None = None):
    """The wrapper holding the config's fixed settings under their routed names (the vocabulary's families)."""
    from ..training.towers import PREDICT_BATCH
    from .estimator import PipelineClassifier, PipelineRegressor

    fixed: dict[str, Any] = {}
    for family, spec in ((NETWORK, config.model), (OPTIMIZER, config.optimizer), (SCHEDULE, config.schedule),
                         (EARLY_STOPPING, config.callbacks.early_stopping), (CHECKPOINT, config.callbacks.checkpoint)):
        fixed.update(family.params(spec))
    wrapper = PipelineRegressor if task == "regression" else PipelineClassifier
    return wrapper(
        terminate_on_nan=config.callbacks.terminate_on_nan,
        steps_per_execution=config.training.steps_per_execution,
        epochs=config.training.epochs,
        batch_size=config.training.batch_size,
        validation_split=config.data.validation_split,
        random_state=config.seed,
        predict__batch_size=PREDICT_BATCH,
        checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
        context=context,
        replay_from=replay_from,
        **fixed,
    )


@contextmanager
def open_runner(config: ExperimentConfig, workers: int = 0, client=None) -> Iterator[Any]:
    """Where the search's jobs train: this machine's processes (with `workers` worker processes
    already started, see `pipeline.tuning.runners.EarlyWorkers`), or a Dask cluster: the scheduler
    of `client` (connected by the caller, which closes it), else one connected and closed here."""
    from .runners import LocalRunner, available_cores

    execution = config.execution
    if execution.backend != "dask":
        runner = LocalRunner(local_trainers(config), workers)
        try:
            yield runner
        finally:
            runner.close()
        return
    from .certificates import TlsFiles
    from .cluster import DaskRunner, dask_client

    if client is not None:
        yield DaskRunner(client)
        return
    with dask_client(execution.scheduler, available_cores(), dashboard=execution.dashboard,
                     tls=TlsFiles.of(execution)) as client:
        yield DaskRunner(client)


def local_trainers(config: ExperimentConfig) -> int:
    """How many processes may train at once on this machine: `execution.n_jobs`, by default one per core."""
    from .runners import available_cores

    return config.execution.n_jobs or available_cores()


def run_search(config: ExperimentConfig, dataset: Dataset, run_dir: Path | None = None, *, progress: bool = True,
               budget: FitBudget | None = None, workers: int = 0, client=None,
               cpu_root: int | None = None) -> dict[str, Any]:
    """Run (or, in an existing run folder, resume) the search; write results, best model and run.json.
    `workers`: local worker processes started before (`pipeline.tuning.runners.EarlyWorkers`);
    `client`: a Dask client already connected to `execution.scheduler` (see `open_runner`);
    `cpu_root`: the process whose tree search.budget_minutes counts (default: this one).

    Everything it keeps between fits (compiled models, the stop flag, the fit budget) belongs to
    this call: two searches in one process share nothing."""
    from sklearn.base import clone

    from ..review.report import write_report
    from ..review.significance import compare_with_best
    from ..review.tensorboard_export import write_tensorboard
    from ..review.tables import (best_params, best_row, cv_results_frame, last_round, primary_view, pruning_summary,
                                 summary_lines, tidy_results)
    from ..training.callbacks import graceful_interrupt
    from ..training.context import TrainingContext
    from .records import candidate_key, fold_key
    from .results import fit_histories, fit_table, record_columns

    run_dir = run_dir or start_run(config, dataset)
    clock = time.perf_counter()  # this process only; wall_time_s spans the whole run (all workers)
    checkpoint_dir = None
    if config.callbacks.checkpoint.enabled:
        checkpoint_dir = run_dir / "checkpoints"
        checkpoint_dir.mkdir(exist_ok=True)
    context = TrainingContext()
    execution = config.execution
    metrics = scoring_metrics(config, dataset.task)
    with graceful_interrupt(context.stop):
        with open_runner(config, workers, client) as runner:  # its workers end before the refit
            session = SearchSession(run_dir, context=context, runner=runner,
                                    max_towers=execution.max_towers if execution.fuse else 1,
                                    max_consecutive_failures=execution.max_consecutive_failures, budget=budget,
                                    continue_rounds=config.search.pruning is not None or config.search.strategy == "pbt"
                                    or (config.search.strategy.startswith("halving")
                                        and config.search.resource == "epochs"))
            estimator = build_estimator(config, dataset.task, context=context, replay_from=session.store,
                                        checkpoint_dir=checkpoint_dir)
            cv = make_cv(config, dataset.task)
            search = build_search(config, estimator, cv, TrainFirst, RecordScorer(metrics))
            search.session = session
            if config.search.budget_minutes is not None:
                search.budget = CpuBudget(config.search.budget_minutes, run_dir, cpu_root)
            total = count_fits(config, dataset).fits - 1 if progress else 0  # a bar's total only: no bar, no count
            with JournalProgress(run_dir / JOURNAL_NAME, total, enabled=progress), _quiet_fit_failures():
                search.fit(dataset.x_train, dataset.y_train)
            if session.states is not None:
                session.states.clear()  # every round is done: nothing left to continue

        primary, *extra_metrics = metrics
        cv_results = primary_view(search.cv_results_, primary) if extra_metrics else search.cv_results_
        keys = [candidate_key(clone(estimator).set_params(**params).get_params()) for params in cv_results["params"]]
        records = session.store.records()
        x, y = dataset.x_train, dataset.y_train
        splits = list(cv.split(x, y))
        results = tidy_results(cv_results, **record_columns(records, keys), extra_metrics=extra_metrics)
        ratio = sum(len(test) / len(train) for train, test in splits) / len(splits)  # n_test / n_train
        results = compare_with_best(results, test_train_ratio=ratio)
        write_csv_atomic(results, run_dir / "results.csv")
        write_csv_atomic(cv_results_frame(search.cv_results_), run_dir / "cv_results.csv")
        write_csv_atomic(fit_histories(records, keys), run_dir / "fit_histories.csv")
        fold_keys = [fold_key(x[train], y[train]) for train, _ in splits]
        write_csv_atomic(fit_table(records, keys, fold_keys, list(metrics)), run_dir / "fits.csv")
        final = last_round(results)
        if final["mean_test_score"].isna().all():
            reason = f"every candidate{' of the last round' * (len(final) < len(results))} failed, e.g. " \
                     f"{final['error'].iloc[0]}"
            update_run(run_dir, status="failed", reason=reason, finished=utc_now(), n_candidates=int(len(results)),
                       n_folds=config.cv.folds, failed_candidates=_failures(results))
            write_report(run_dir)
            write_tensorboard(run_dir)
            raise EveryCandidateFailed(f"{reason}; see {run_dir}/report.html, change the search space and start a new run")
        chosen = best_row(results)  # for halving: the best of the last round, not necessarily rank 1
        best = best_params(results, cv_results)
        if config.search.strategy == "pbt":
            from .pbt import population_summary, refit_schedule

            update_run(run_dir, pbt=population_summary(search, best["member"]))
            refitted = refit_schedule(estimator, search.schedule_of(best["member"]),
                                      dataset.x_train, dataset.y_train, context)
        else:
            refitted = refit(config, dataset, best, context, checkpoint_dir)
        if config.search.pruning is not None:
            update_run(run_dir, pruning=pruning_summary(results, config.search.pruning.rungs(config.training.epochs)))
    test_scores = _test_scores(refitted, dataset, run_dir)
    _save_best(refitted, config, dataset, run_dir, best, chosen, primary, test_scores)
    started = read_json(run_dir / "run.json")
    outcome = update_run(
        run_dir,
        status="finished",
        strategy=config.search.strategy,
        seed=config.seed,
        finished=utc_now(),
        wall_time_s=seconds_since(started.get("started")),
        this_process_s=round(time.perf_counter() - clock, 2),
        n_candidates=int(len(results)),
        n_folds=config.cv.folds,
        cv_repeats=config.cv.repeats,
        scoring=primary,
        failed_candidates=_failures(results),
        execution=execution.model_dump(mode="json"),
        fused_candidates=sorted(int(c) for c in results.loc[results["fused_towers"] > 0, "candidate"]),
        continued_fits=sum(1 for record in records if (record.trainer.get("fused") or {}).get("continued_from")),
        incidents=len(read_incidents(run_dir)),
        best_params={k: plain_value(k, v) for k, v in best.items()},
        best_cv_score=float(chosen["mean_test_score"]),
        test_scores=test_scores,
        **({"test_accuracy": test_scores["accuracy"]} if "accuracy" in test_scores else {}),
        argv=sys.argv,
    )
    write_report(run_dir)
    write_tensorboard(run_dir)
    return {**outcome, "run_dir": str(run_dir), "summary": summary_lines(results, cv_results)}


def _failures(results) -> dict[str, str]:
    """Failed candidate number -> its error, for run.json."""
    failed = results[results["error"] != ""]
    return {str(int(row["candidate"])): row["error"] for _, row in failed.iterrows()}


def refit(config: ExperimentConfig, dataset: Dataset, best: dict[str, Any], context, checkpoint_dir: Path | None):
    """The best candidate trained on the whole training split."""
    from .estimator import CandidateFailed

    estimator = build_estimator(config, dataset.task, context=context, checkpoint_dir=checkpoint_dir).set_params(**best)
    try:
        return estimator.fit(dataset.x_train, dataset.y_train)
    except CandidateFailed as failure:
        raise PipelineError(f"the best candidate failed when refitted on the whole training split "
                            f"({failure.reason}); see results.csv and change the search space") from None


def _save_best(estimator, config, dataset, run_dir, best, chosen, primary, test_scores) -> None:
    import pandas as pd

    from ..training.persistence import save_model

    history = pd.DataFrame(estimator.history_)
    history.insert(0, "epoch", range(len(history)))
    write_csv_atomic(history, run_dir / "history.csv")
    save_model(estimator.model_, run_dir / "best_model", {
        "task": dataset.task,
        "preprocessing": dataset.preprocessing,
        "classes": dataset.classes,
        "hyperparameters": {k: plain_value(k, v) for k, v in best.items()},
        "scores": {"cv_mean": float(chosen["mean_test_score"]), "cv_std": float(chosen["std_test_score"]),
                   "scoring": primary, **{f"test_{k}": v for k, v in test_scores.items()}},
        "dataset": dataset.name,
    })


def _test_scores(estimator, dataset: Dataset, run_dir: Path) -> dict[str, float]:
    """The refitted best model on the held-out test split (and its confusion matrix, for classes)."""
    import pandas as pd
    from sklearn.metrics import confusion_matrix

    from ..training.single import held_out_scores

    predicted = estimator.predict(dataset.x_test)
    if dataset.task == "classification":
        confusion = pd.DataFrame(confusion_matrix(dataset.y_test, predicted, labels=dataset.classes),
                                 index=pd.Index(dataset.classes, name="true"), columns=dataset.classes)
        write_csv_atomic(confusion.reset_index(), run_dir / "confusion_matrix.csv")
    return held_out_scores(dataset.task, dataset.y_test, predicted)


@contextmanager
def _quiet_fit_failures() -> Iterator[None]:
    """Failed fits are reported in results.csv's error column, not as scikit-learn's long warnings."""
    from sklearn.exceptions import FitFailedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitFailedWarning)
        warnings.filterwarnings("ignore", message="One or more of the .* scores are non-finite")
        yield

