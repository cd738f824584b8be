"""RUN/tensorboard from a hand-written run folder: domains, sessions, scalars, failures, replacement."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import read_tensorboard

from pipeline.core.errors import PipelineError
from pipeline.review.tensorboard_export import write_tensorboard

CONFIG = {"experiment": "hand", "search": {"strategy": "random", "params": [
    {"optimizer__learning_rate": {"distribution": "loguniform", "low": "1e-3", "high": 0.3},  # YAML: 1e-3 is text
     "batch_size": {"distribution": "randint", "low": 16, "high": 128},
     "model__hidden_layers": [[64, 64], [32]], "optimizer__nesterov": [True, False]},
]}}


@pytest.fixture
def run_dir(tmp_path):
    """Three candidates x two folds; candidate 2 failed; one fit of candidate 1 trained on data
    that is no CV fold (empty fold number)."""
    folder = tmp_path / "hand-run"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    pd.DataFrame({
        "rank": [1, 2, 3], "candidate": [0, 1, 2], "batch_size": [32, 100, 17],
        "model__hidden_layers": ["64-64", "32", "32"], "optimizer__learning_rate": [0.01, 0.2, 0.0011],
        "optimizer__nesterov": [True, False, True], "mean_test_score": [0.9, 0.8, np.nan],
        "fold0_test_score": [0.91, 0.81, np.nan], "fold1_test_score": [0.89, 0.79, np.nan],
        "error": ["", "", "FloatingPointError: the loss diverged"],
    }).to_csv(folder / "results.csv", index=False)
    pd.DataFrame({
        "candidate": [0, 0, 1, 1, 2, 2], "fold": [0, 1, 0, None, 0, 1],
        "fold_key": ["1234e567", "aa", "1234e567", "cc", "1234e567", "aa"],
        "test_accuracy": [0.91, 0.89, 0.81, 0.79, np.nan, np.nan],
        "train_accuracy": [0.95, 0.94, 0.85, 0.84, np.nan, np.nan],
        "error": ["", "", "", "", "FloatingPointError: the loss diverged", "FloatingPointError: the loss diverged"],
    }).to_csv(folder / "fits.csv", index=False)
    curves = pd.DataFrame({"candidate": [0, 0], "fold": ["1234e567"] * 2, "epoch": [0, 1],
                           "loss": [1.5, 0.5], "val_accuracy": [0.7, 0.875]})
    curves.to_csv(folder / "fit_histories.csv", index=False)
    pd.DataFrame({"epoch": [0, 1, 2], "loss": [1.0, 0.5, 0.25]}).to_csv(folder / "history.csv", index=False)
    (folder / "run.json").write_text(json.dumps({
        "experiment": "hand", "status": "finished", "scoring": "accuracy", "best_params": {"batch_size": 32},
        "best_cv_score": 0.9, "test_scores": {"accuracy": 0.93}}))
    return folder


def test_sessions_hyperparameters_and_scalars(run_dir):
    board = read_tensorboard(write_tensorboard(run_dir))
    assert set(board) == {".", "refit", "candidate_000/fold_0", "candidate_000/fold_1", "candidate_001/fold_0",
                          "candidate_001/fold_cc", "candidate_002/fold_0", "candidate_002/fold_1"}
    first = board["candidate_000/fold_0"]
    assert {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in first["session"].hparams.items()} \
        == {"batch_size": 32.0, "model__hidden_layers": "64-64", "optimizer__learning_rate": 0.01,
            "optimizer__nesterov": True, "fold": "0"}
    scalars = first["scalars"]
    assert scalars["epoch_loss"] == [(0, 1.5), (1, 0.5)]  # scalars are float32, as Keras writes them
    assert scalars["epoch_val_accuracy"] == [(0, pytest.approx(0.7)), (1, 0.875)]
    assert scalars["test_score"] == [(1, pytest.approx(0.91))] and scalars["train_score"] == [(1, pytest.approx(0.95))]
    assert scalars["mean_test_score"] == [(1, pytest.approx(0.9))]
    assert board["candidate_001/fold_cc"]["session"].hparams["fold"].string_value == "cc"
    failed = board["candidate_002/fold_1"]
    assert failed["scalars"] == {} and failed["session"].hparams["batch_size"].number_value == 17
    refit = board["refit"]
    assert refit["session"].hparams["optimizer__learning_rate"].number_value == 0.01
    assert refit["scalars"]["epoch_loss"][-1] == (2, 0.25) and refit["scalars"]["test_score"] == [(2, pytest.approx(0.93))]


def test_domains_are_the_configs_intervals_or_the_values_taken(run_dir):
    experiment = read_tensorboard(write_tensorboard(run_dir))["."]["experiment"]
    domains = {info.name: info for info in experiment.hparam_infos}
    assert list(domains) == ["batch_size", "model__hidden_layers", "optimizer__learning_rate",
                             "optimizer__nesterov", "fold"]
    rate = domains["optimizer__learning_rate"].domain_interval
    assert (rate.min_value, rate.max_value) == (0.001, 0.3)
    assert (domains["batch_size"].domain_interval.min_value, domains["batch_size"].domain_interval.max_value) == (16, 128)
    assert [v.string_value for v in domains["model__hidden_layers"].domain_discrete.values] == ["32", "64-64"]
    assert [v.bool_value for v in domains["optimizer__nesterov"].domain_discrete.values] == [False, True]
    assert [v.string_value for v in domains["fold"].domain_discrete.values] == ["0", "1", "cc", "refit"]
    metrics = [info.name.tag for info in experiment.metric_infos]
    assert metrics == ["test_score", "mean_test_score", "train_score", "epoch_val_accuracy", "epoch_loss"]


def test_a_value_outside_the_configs_interval_falls_back_to_the_values_taken(run_dir):
    results = pd.read_csv(run_dir / "results.csv")
    results.loc[2, "optimizer__learning_rate"] = 0.5  # e.g. the config was edited after the run
    results.to_csv(run_dir / "results.csv", index=False)
    experiment = read_tensorboard(write_tensorboard(run_dir))["."]["experiment"]
    rate = next(info for info in experiment.hparam_infos if info.name == "optimizer__learning_rate")
    assert [v.number_value for v in rate.domain_discrete.values] == [0.01, 0.2, 0.5]


def test_rewriting_replaces_the_folder_and_leaves_no_temporary_folders(run_dir):
    folder = write_tensorboard(run_dir)
    (folder / "stale").mkdir()
    results = pd.read_csv(run_dir / "fits.csv")
    results[results["candidate"] == 0].to_csv(run_dir / "fits.csv", index=False)
    assert set(read_tensorboard(write_tensorboard(run_dir))) == {".", "refit", "candidate_000/fold_0",
                                                                  "candidate_000/fold_1"}
    assert not (folder / "stale").exists()
    assert sorted(p.name for p in run_dir.iterdir() if "tensorboard" in p.name) == ["tensorboard"]


def test_a_run_without_fits_csv_is_refused_and_nothing_is_written(run_dir):
    (run_dir / "fits.csv").unlink()
    with pytest.raises(PipelineError, match=r"fits\.csv missing.*older pipeline"):
        write_tensorboard(run_dir)
    assert not any("tensorboard" in p.name for p in run_dir.iterdir())
