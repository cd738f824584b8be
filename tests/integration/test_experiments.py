"""The seeds' other studies: regression end to end, the optimizer/regularization configs, the baselines."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import PROJECT, run_main

from pipeline import baselines
from pipeline.search import main


def test_regression_end_to_end_on_quadratic(tmp_path, capsys):
    args = ["--config", PROJECT / "configs" / "quadratic.yaml", "--output-dir", tmp_path / "out", "--quiet",
            "--set", "data.samples=300", "--set", "training.epochs=4", "--set", "cv.folds=2",
            "--set", "execution.fits_per_process=0",
            "--set", "search.params={model__init_mode: [zeros, glorot_uniform], optimizer__learning_rate: [0.001, 0.003]}"]
    assert run_main(main, args) == 0
    out = capsys.readouterr().out
    (run_dir,) = (tmp_path / "out").iterdir()
    results = pd.read_csv(run_dir / "results.csv")
    assert {"mean_test_score", "mean_test_r2", "std_test_r2", "train_test_gap"} <= set(results.columns)
    assert (results["mean_test_score"] < 0).all()  # negative MSE
    cv_results = pd.read_csv(run_dir / "cv_results.csv")
    assert np.allclose(sorted(cv_results["mean_test_r2"]), sorted(results["mean_test_r2"]))
    run = json.loads((run_dir / "run.json").read_text())
    assert run["scoring"] == "neg_mean_squared_error" and set(run["test_scores"]) == {"mse", "r2"}
    assert "test mse" in out and "r2" in out
    import pipeline

    model = pipeline.load_model(run_dir / "best_model")
    assert model.metadata["task"] == "regression" and model.keras_model.layers[-1].units == 1
    predictions = model.predict(np.array([[0.0, 0.0], [5.0, 10.0]]) / [5.0, 10.0])
    assert predictions.shape == (2,)
    markdown = (run_dir / "report.md").read_text()
    assert "plots/loss_curves_optimizer__learning_rate.png" in markdown and "confusion" not in markdown
    assert "r2 mean ± std" in markdown


def test_train_on_the_regression_config(tmp_path, capsys):
    """`pipeline.train` on quadratic.yaml: one linear output, MSE loss, test MSE and R^2 reported
    (the MSE is the loaded model's own on the test split)."""
    import pipeline
    from pipeline import train

    args = ["--config", PROJECT / "configs" / "quadratic.yaml", "--output-dir", tmp_path / "out", "--quiet",
            "--set", "data.samples=300", "--set", "training.epochs=30", "--set", "model.init_mode=glorot_uniform",
            "--set", "optimizer.learning_rate=0.003"]
    assert run_main(train.main, args) == 0
    out = capsys.readouterr().out
    (run_dir,) = (tmp_path / "out").iterdir()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["task"] == "regression" and set(run) >= {"test_mse", "test_r2"} and "test_accuracy" not in run
    assert f"mse {run['test_mse']:.4f}, r2 {run['test_r2']:.4f}" in out and "regression" in out
    model = pipeline.load_model(run_dir / "model")
    data = pipeline.load_dataset(pipeline.load_config(run_dir / "config.yaml").data, 7)
    assert model.metadata["task"] == "regression" and model.keras_model.layers[-1].units == 1
    mse = float(np.mean((model.predict(data.x_test * [5.0, 10.0]) - data.y_test) ** 2))
    assert mse == pytest.approx(run["test_mse"], rel=1e-4) and run["test_r2"] > 0


@pytest.mark.parametrize("config, needle", [
    ("optimizers.yaml", "loss_curves_optimizer__optimizer__momentum__optimizer__nesterov__optimizer__decay.png"),
    ("regularization.yaml", "train − validation gap"),
])
def test_study_configs_run_when_shrunk(config, needle, tmp_path):
    shrink = ["data.name=mnist-sample", "data.train_samples=300", "data.test_samples=100", "training.epochs=2",
              "cv.folds=2", "execution.fits_per_process=0", "model.hidden_layers=[16]"]
    args = ["--config", PROJECT / "configs" / config, "--output-dir", tmp_path / "out", "--quiet"]
    for override in shrink:
        args += ["--set", override]
    assert run_main(main, args) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    markdown = (run_dir / "report.md").read_text()
    assert needle in markdown
    results = pd.read_csv(run_dir / "results.csv")
    assert results["error"].isna().all() and results["mean_test_score"].notna().all()
    if config == "optimizers.yaml":
        assert set(results["optimizer"]) == {"sgd", "rmsprop", "adam"} and len(results) == 10
    else:
        assert results["train_test_gap"].notna().all() and len(results) == 18


def test_random_weight_baselines(tmp_path, capsys):
    assert run_main(baselines.main, ["random-weights", "--dataset", "spiral", "--iterations", "3000",
                                     "--output-dir", tmp_path]) == 0
    (run_dir,) = tmp_path.iterdir()
    log = pd.read_csv(run_dir / "improvements.csv")
    final = {}
    for method, rows in log.groupby("method"):
        assert rows["loss"].is_monotonic_decreasing and rows["loss"].diff().dropna().lt(0).all()
        assert rows["iteration"].is_monotonic_increasing and rows["iteration"].max() <= 3000
        final[method] = rows["loss"].iloc[-1]
    assert set(final) == {"random search", "hill climbing", "adam (gradient)"}
    assert final["adam (gradient)"] < min(final["random search"], final["hill climbing"])
    assert (run_dir / "loss_vs_iteration.png").read_bytes().startswith(b"\x89PNG")
    assert "hill climbing" in capsys.readouterr().out


def test_numpy_loss_matches_keras():
    from pipeline.training.baselines import loss_and_accuracy
    from pipeline.training.factory import build_model

    rng = np.random.default_rng(0)
    x, y = rng.random((50, 2), dtype=np.float32), rng.integers(0, 3, 50)
    model = build_model(n_features=2, n_outputs=3, hidden_layers=(3,), bias_init="constant(0.1)")
    keras_loss, keras_accuracy = model.evaluate(x, y, verbose=0)
    loss, accuracy = loss_and_accuracy(model.get_weights(), x, y)
    assert loss == pytest.approx(keras_loss, rel=1e-5) and accuracy == pytest.approx(keras_accuracy)


def test_baselines_reject_bad_arguments(tmp_path, capsys):
    assert run_main(baselines.main, ["random-weights", "--iterations", "0", "--output-dir", tmp_path]) == 2
    assert "must be positive" in capsys.readouterr().err and not any(tmp_path.iterdir())
