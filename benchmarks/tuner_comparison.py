"""Adaptive tuners side by side: the pipeline's TPE search against KerasTuner's
BayesianOptimization and Optuna's TPE with a pruner run one trial at a time, over the same space,
on the same data, with the same CPU time.

For each seed, the pipeline's search (`--config`, default configs/tpe.yaml, with that seed) runs
first as a user runs it: a fresh process, imports and its worker processes included. Each
baseline then gets the CPU time the pipeline used, measured the same way (the process and its
children), and runs in a fresh process of its own:

- both ask trials one at a time from the config's own space (`pipeline.tuning.tpe.suggest`,
  the function the pipeline asks Optuna with; for KerasTuner through an adapter to its
  `HyperParameters`, sub-grids as conditional scopes) until their CPU time is spent (the trial
  under way finishes);
- a trial is the config's network built by the pipeline's own factory, trained up to
  `training.epochs` on two thirds of the training split and scored on the other third (one
  hold-out split of a pipeline CV fold's size: how these tools are used), val_accuracy;
- Optuna: `TPESampler(multivariate=True, seed)` with the `SuccessiveHalvingPruner` at the
  config's `search.pruning` (min_epochs, reduction), told val_accuracy after every epoch;
  KerasTuner: `BayesianOptimization(seed)` with EarlyStopping(val_accuracy, patience 5), as its
  guide recommends when epochs are not tuned;
- every tool's best parameters are refitted on the whole training split by the same code (the
  pipeline's `refit`, `training.epochs` epochs) and scored on the test split.

Prints per tool and seed: test accuracy, CPU minutes, trials, candidate-epochs (epochs trained,
summed over trials; the pipeline trains each on 3 folds, so its fit-epochs are 3x as many), and
the medians over the seeds.

Needs keras-tuner in the benchmark's environment (not a project dependency: pip install keras-tuner).

    python benchmarks/tuner_comparison.py [--seeds 7 8 9] [--config configs/tpe.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from search_speed import run_measured  # noqa: E402

TOOLS = ("pipeline", "optuna", "kerastuner")


def cpu_seconds() -> float:
    """CPU time of this process and its waited-for children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class HyperParametersTrial:
    """KerasTuner's `HyperParameters` behind the part of Optuna's trial interface that
    `suggest` uses: the same space, parameters of a sub-grid in a conditional scope."""

    def __init__(self, hp):
        self.hp = hp

    def _scope(self, name: str):
        if ":" in name:  # "<sub-grid>:<parameter>", see pipeline.tuning.tpe.suggest
            return self.hp.conditional_scope("subspace", [int(name.split(":", 1)[0])])
        return nullcontext()

    def suggest_categorical(self, name, values):
        with self._scope(name):
            return self.hp.Choice(name, values)

    def suggest_float(self, name, low, high, log=False):
        with self._scope(name):
            return self.hp.Float(name, low, high, sampling="log" if log else "linear")

    def suggest_int(self, name, low, high):
        with self._scope(name):
            return self.hp.Int(name, low, high)


def build_trial_model(config, params, n_features: int, n_outputs: int):
    """The pipeline's network for these (scikeras-named) parameters, and its batch size."""
    from pipeline.spec.vocabulary import NetworkSpec, OptimizerSpec
    from pipeline.training.factory import build_model

    def part(prefix):
        return {k.split("__", 1)[1]: v for k, v in params.items() if k.startswith(prefix + "__")}

    network = NetworkSpec(**{**config.model.model_dump(), **part("model")})
    optimizer = OptimizerSpec(name=params.get("optimizer", config.optimizer.name),
                              **{"learning_rate": config.optimizer.learning_rate, **part("optimizer")})
    model = build_model(network, n_features=n_features, n_outputs=n_outputs, optimizer=optimizer)
    return model, params.get("batch_size", config.training.batch_size)


def run_baseline(tool: str, config_path: str, seed: int, cpu_budget: float, out: Path) -> None:
    """One baseline search and the refit of its best, in this process; writes out/result.json."""
    import keras
    import numpy as np
    from sklearn.model_selection import train_test_split

    from pipeline.data import load_dataset
    from pipeline.spec.config import load_config
    from pipeline.training.context import TrainingContext
    from pipeline.tuning.run import refit
    from pipeline.tuning.tpe import suggest

    config = load_config(config_path, [f"seed={seed}"], search=True)
    dataset = load_dataset(config.data, config.seed)
    x_fit, x_val, y_fit, y_val = train_test_split(dataset.x_train, dataset.y_train, test_size=1 / config.cv.folds,
                                                  stratify=dataset.y_train, random_state=seed)
    n_features, n_outputs = x_fit.shape[1], len(np.unique(dataset.y_train))
    grids, epochs, trained = config.search.grids(), config.training.epochs, []

    class Epochs(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            trained.append(0)

        def on_epoch_end(self, epoch, logs=None):
            trained[-1] += 1

    if tool == "optuna":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        pruning = config.search.pruning

        def objective(trial):
            params = suggest(trial, grids)
            keras.utils.set_random_seed(seed * 1000 + trial.number)
            model, batch_size = build_trial_model(config, params, n_features, n_outputs)

            class Report(keras.callbacks.Callback):
                def on_epoch_end(self, epoch, logs=None):
                    trial.report(logs["val_accuracy"], epoch + 1)
                    if trial.should_prune():
                        raise optuna.TrialPruned()

            history = model.fit(x_fit, y_fit, validation_data=(x_val, y_val), epochs=epochs, batch_size=batch_size,
                                callbacks=[Epochs(), Report()], verbose=0)
            return history.history["val_accuracy"][-1]

        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=pruning.min_epochs if pruning else "auto",
                                                        reduction_factor=pruning.reduction if pruning else 3)
        study = optuna.create_study(direction="maximize", pruner=pruner,
                                    sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True))
        study.optimize(objective, n_trials=100_000,
                       callbacks=[lambda study, trial: study.stop() if cpu_seconds() >= cpu_budget else None])
        best, n_trials = suggest(optuna.trial.FixedTrial(study.best_params), grids), len(study.trials)
    else:
        import keras_tuner

        class Space(keras_tuner.HyperModel):
            def build(self, hp):
                model, _ = build_trial_model(config, suggest(HyperParametersTrial(hp), grids), n_features, n_outputs)
                return model

            def fit(self, hp, model, *args, **kwargs):
                batch_size = suggest(HyperParametersTrial(hp), grids).get("batch_size", config.training.batch_size)
                return model.fit(*args, batch_size=batch_size, **kwargs)

        class Budgeted(keras_tuner.BayesianOptimization):
            def on_trial_end(self, trial):
                super().on_trial_end(trial)
                if cpu_seconds() >= cpu_budget:
                    self.oracle.max_trials = len(self.oracle.trials)  # the oracle asks for no further trial

        tuner = Budgeted(Space(), objective="val_accuracy", max_trials=100_000, seed=seed, directory=str(out),
                         project_name="kerastuner", overwrite=True)
        tuner.search(x_fit, y_fit, validation_data=(x_val, y_val), epochs=epochs, verbose=0,
                     callbacks=[Epochs(), keras.callbacks.EarlyStopping("val_accuracy", patience=5)])
        best_hp = tuner.get_best_hyperparameters()[0]
        best, n_trials = suggest(HyperParametersTrial(best_hp), grids), len(tuner.oracle.trials)
    search_cpu = cpu_seconds()
    model = refit(config, dataset, best, TrainingContext(), None)
    accuracy = float(np.mean(model.predict(dataset.x_test) == dataset.y_test))
    (out / "result.json").write_text(json.dumps({
        "test_accuracy": accuracy, "trials": n_trials, "candidate_epochs": sum(trained),
        "search_cpu_s": round(search_cpu, 1), "best_params": {k: str(v) for k, v in best.items()}}))


def run_pipeline(config: str, seed: int, out: Path) -> dict:
    wall, cpu, _, _ = run_measured([sys.executable, "-m", "pipeline.search", "--config", config, "--set",
                                    f"seed={seed}", "--output-dir", str(out), "--quiet"])
    (run_dir,) = out.iterdir()
    run = json.loads((run_dir / "run.json").read_text())
    pruning = run.get("pruning") or {}
    return {"test_accuracy": run["test_accuracy"], "cpu_s": cpu, "wall_s": wall,
            "trials": pruning.get("reached", [run["n_candidates"]])[0],
            "candidate_epochs": pruning.get("candidate_epochs"), "best_cv_score": run["best_cv_score"],
            "best_params": run["best_params"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--config", default=str(ROOT / "configs" / "tpe.yaml"))
    parser.add_argument("--baseline", choices=TOOLS[1:], help=argparse.SUPPRESS)  # one baseline, in its own process
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cpu-budget", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        run_baseline(args.baseline, args.config, args.seed, args.cpu_budget, Path(args.out))
        return
    try:
        import keras_tuner  # noqa: F401
    except ImportError:
        raise SystemExit("this benchmark needs KerasTuner in its environment: pip install keras-tuner") from None
    results: dict[str, list[dict]] = {tool: [] for tool in TOOLS}
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            ours = run_pipeline(args.config, seed, Path(scratch) / f"pipeline-{seed}")
            results["pipeline"].append(ours)
            print(f"seed {seed} pipeline: {json.dumps(ours)}", flush=True)
            for tool in TOOLS[1:]:
                out = Path(scratch) / f"{tool}-{seed}"
                out.mkdir()
                wall, cpu, _, _ = run_measured([sys.executable, __file__, "--baseline", tool, "--config", args.config,
                                                "--seed", str(seed), "--cpu-budget", str(ours["cpu_s"]),
                                                "--out", str(out)])
                result = {**json.loads((out / "result.json").read_text()), "cpu_s": cpu, "wall_s": wall}
                results[tool].append(result)
                print(f"seed {seed} {tool}: {json.dumps(result)}", flush=True)
    print(f"\n{os.path.basename(args.config)}, seeds {args.seeds}, {time.strftime('%Y-%m-%d %H:%M')}\n")
    print("| tool | test accuracy (median) | per seed | CPU min (median) | trials (median) | candidate-epochs (median) |")
    print("|---|---|---|---|---|---|")
    for tool, runs in results.items():
        per_seed = ", ".join(f"{r['test_accuracy']:.4f}" for r in runs)
        print(f"| {tool} | {statistics.median(r['test_accuracy'] for r in runs):.4f} | {per_seed} | "
              f"{statistics.median(r['cpu_s'] for r in runs) / 60:.1f} | {statistics.median(r['trials'] for r in runs):g} | "
              f"{statistics.median(r['candidate_epochs'] or 0 for r in runs):g} |")


if __name__ == "__main__":
    main()
