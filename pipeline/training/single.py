"""Train one model from a config and write a run folder (the library side of `python -m pipeline.train`).

config -> dataset (the one really used is recorded) -> run folder -> seeded model -> fit with
the configured callbacks -> test score -> saved model, history.csv, plots and run.json.
Everything that can be wrong with the input is checked before the run folder is created.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from ..core.errors import RunFailed
from ..core.files import create_run_dir, library_versions, utc_now, write_json_atomic, write_text_atomic
from ..data import Dataset
from ..data.datasets import split_validation
from ..spec.config import ExperimentConfig


def train_model(config: ExperimentConfig, dataset: Dataset, verbose: int = 0) -> dict[str, Any]:
    """Train one model as configured; returns the summary that run.json records."""
    import pandas as pd

    from ..core.runtime import set_seed
    from ..review.plots import save_history_plots
    from .callbacks import make_callbacks
    from .factory import build_model
    from .persistence import save_model

    started, clock = utc_now(), time.perf_counter()
    (x_fit, y_fit), validation = split_validation(
        dataset.x_train, dataset.y_train, config.data.validation_split, config.seed
    )
    encode = _label_encoder(dataset)
    if validation is not None:
        validation = (validation[0], encode(validation[1]))
    run_dir = create_run_dir(config.output_dir, config.experiment)
    write_text_atomic(run_dir / "config.yaml", config.to_yaml())
    set_seed(config.seed)
    regression = dataset.task == "regression"
    model = build_model(
        config.model,
        n_features=dataset.x_train.shape[1],
        n_outputs=1 if regression else len(dataset.classes),
        output_activation="linear" if regression else "softmax",
        loss="mse" if regression else "sparse_categorical_crossentropy",
        metrics=() if regression else ("accuracy",),
        optimizer=config.optimizer,
        steps_per_execution=config.training.steps_per_execution,
    )
    callbacks = make_callbacks(
        schedule=config.schedule,
        early_stopping=config.callbacks.early_stopping,
        checkpoint=config.callbacks.checkpoint,
        checkpoint_path=run_dir / "checkpoint.weights.h5",
        terminate_on_nan=config.callbacks.terminate_on_nan,
        history_csv=run_dir / "history.csv",
    )
    fit = model.fit(
        x_fit, encode(y_fit),
        validation_data=validation,
        epochs=config.training.epochs,
        batch_size=config.training.batch_size,
        callbacks=callbacks,
        verbose=verbose,
    )
    history = pd.read_csv(run_dir / "history.csv")
    diverged = divergence(fit.history["loss"], ceiling=_constant_guess_loss(dataset, y_fit) * DIVERGED_FACTOR)
    if diverged:
        save_history_plots(history, run_dir)
        write_json_atomic(run_dir / "run.json", {"kind": "train", "status": "diverged", "reason": diverged,
                                                 "experiment": config.experiment, "started": started,
                                                 "finished": utc_now(), "argv": sys.argv})
        raise TrainingDiverged(f"training diverged: {diverged} (run folder {run_dir}, no model saved)")
    summary = {
        "run_dir": str(run_dir),
        "task": dataset.task,
        "epochs_run": len(fit.history["loss"]),
        **{f"test_{name}": value for name, value in evaluate_on_test(model, dataset).items()},
        "final": {key: float(values[-1]) for key, values in fit.history.items()},
    }
    save_model(model, run_dir / "model", {
        "task": dataset.task,
        "preprocessing": dataset.preprocessing,
        "classes": dataset.classes,
        "hyperparameters": {"model": config.model.model_dump(), "optimizer": config.optimizer.model_dump()},
        "scores": {name: value for name, value in summary.items() if name.startswith("test_")},
        "dataset": dataset.name,
    })
    save_history_plots(history, run_dir)
    write_json_atomic(run_dir / "run.json", {
        "kind": "train",
        "status": "finished",
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


class TrainingDiverged(RunFailed):
    """The loss blew up: a candidate failure in a search, a failed run of `pipeline.train`."""


# A loss that ends this many times above a constant guess's (ln k for k classes, the target's
# variance for regression) has diverged even while it is still finite (e.g. a learning rate of 1000).
DIVERGED_FACTOR = 10.0


def divergence(losses: list[float], ceiling: float | None = None) -> str | None:
    """Why a fit diverged (its loss ends non-finite, or above `ceiling`), else None."""
    if losses and not np.isfinite(losses[-1]):
        epoch = next(i for i, loss in enumerate(losses, start=1) if not np.isfinite(loss))
        return f"loss became {losses[-1]} in epoch {epoch}; lower the learning rate"
    if losses and ceiling is not None and losses[-1] > ceiling:
        return (f"loss ended at {losses[-1]:.4g}, over {DIVERGED_FACTOR:g}x a constant guess's "
                f"({ceiling / DIVERGED_FACTOR:.3g}); lower the learning rate")
    return None


def _constant_guess_loss(dataset: Dataset, y_fit) -> float:
    """The loss of a model that ignores its input: ln(classes), or the variance of the target."""
    if dataset.task == "regression":
        return float(np.var(y_fit)) or 1.0
    return float(np.log(len(dataset.classes)))


def _label_encoder(dataset: Dataset):
    """Labels -> output indices 0..k-1 (labels such as 3 and 8 are classes 0 and 1 of the network)."""
    if dataset.task == "regression":
        return lambda y: y
    classes = np.asarray(dataset.classes)
    return lambda y: np.searchsorted(classes, y)


def evaluate_on_test(model, dataset: Dataset) -> dict[str, float]:
    """The trained model on the held-out test split: accuracy and loss, or MSE and R^2."""
    outputs = model.predict(dataset.x_test, verbose=0, batch_size=1024)
    if dataset.task == "regression":
        return held_out_scores("regression", dataset.y_test, outputs[:, 0])
    loss = model.evaluate(dataset.x_test, _label_encoder(dataset)(dataset.y_test), verbose=0, batch_size=1024,
                          return_dict=True)["loss"]
    predicted = np.asarray(dataset.classes)[np.argmax(outputs, axis=1)]
    return {**held_out_scores("classification", dataset.y_test, predicted), "loss": float(loss)}


def held_out_scores(task: str, y_true, predicted) -> dict[str, float]:
    """The test-split scores every trained model reports: accuracy, or MSE and R^2."""
    from sklearn.metrics import mean_squared_error, r2_score

    if task == "regression":
        return {"mse": float(mean_squared_error(y_true, predicted)), "r2": float(r2_score(y_true, predicted))}
    return {"accuracy": float(np.mean(np.asarray(predicted) == np.asarray(y_true)))}
