"""The training run end to end on tiny data, the JSON + HDF5 round trip, and callbacks inside training."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_main, write_config

from pipeline.core.errors import PipelineError
from pipeline.training.persistence import load_model
from pipeline.train import main


def _only_run(folder):
    (run_dir,) = folder.iterdir()
    return run_dir


def test_train_run_writes_history_plots_model_and_metadata(tmp_path, capsys):
    config = write_config(tmp_path, optimizer={"name": "sgd", "learning_rate": 0.1, "momentum": 0.8, "decay": 0.01},
                          training={"epochs": 3, "batch_size": 30})
    assert run_main(main, ["--config", config, "--output-dir", tmp_path / "out", "--quiet"]) == 0
    out = capsys.readouterr().out
    run_dir = _only_run(tmp_path / "out")
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == [0, 1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(history.columns)
    # 270 fit samples / batch 30 = 9 updates per epoch: the rate at each epoch start is 0.1 / (1 + 0.01 * t).
    assert history["learning_rate"].tolist() == pytest.approx([0.1, 0.1 / 1.09, 0.1 / 1.18], rel=1e-5)
    for name in ("history_loss.png", "history_accuracy.png", "history_learning_rate.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["dataset"]["name"] == "mnist-sample" and run["dataset"]["n_train"] == 300
    assert run["dataset"]["n_fit"] == 270 and run["epochs_run"] == 3
    assert f"accuracy {run['test_accuracy']:.4f}" in out
    assert {"model.json", "model.weights.h5", "model.keras", "metadata.json"} <= {p.name for p in (run_dir / "model").iterdir()}


def test_json_and_hdf5_round_trip_predicts_bit_for_bit(tmp_path):
    from pipeline.spec.config import load_config
    from pipeline.data import load_dataset
    from pipeline.training.single import train_model

    config = load_config(write_config(tmp_path), [f"output_dir={tmp_path / 'out'}"])
    data = load_dataset(config.data, config.seed)
    result = train_model(config, data)
    loaded = load_model(f"{result['run_dir']}/model")
    native = load_model(f"{result['run_dir']}/model", native=True)
    raw = (data.x_test[:32] * 255).round().astype(np.uint8).reshape(-1, 28, 28)
    probabilities = loaded.predict_proba(raw)
    assert np.array_equal(probabilities, native.predict_proba(raw))
    accuracy = np.mean(loaded.predict(data.x_test.reshape(-1, 28, 28) * 255) == data.y_test)
    assert accuracy == pytest.approx(result["test_accuracy"], abs=1e-6)


def test_exponential_schedule_early_stopping_and_checkpoint(tmp_path):
    config = write_config(
        tmp_path, optimizer={"name": "sgd", "learning_rate": 0.2},
        training={"epochs": 30, "batch_size": 32}, schedule={"name": "exponential", "k": 0.5},
        callbacks={"early_stopping": {"enabled": True, "monitor": "loss", "patience": 0, "min_delta": 10.0},
                   "checkpoint": {"enabled": True, "monitor": "val_accuracy", "mode": "max"}},
    )
    assert run_main(main, ["--config", config, "--output-dir", tmp_path / "out", "--quiet"]) == 0
    run_dir = _only_run(tmp_path / "out")
    history = pd.read_csv(run_dir / "history.csv")
    # min_delta=10 means no epoch ever "improves": training stops after patience+1 epochs.
    assert len(history) == 2
    assert history["learning_rate"].tolist() == pytest.approx([0.2, 0.2 * np.exp(-0.5)], rel=1e-6)
    assert (run_dir / "checkpoint.weights.h5").stat().st_size > 0


def test_load_model_errors(tmp_path):
    with pytest.raises(PipelineError, match="not found"):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError, match="metadata.json is missing"):
        load_model(tmp_path / "empty")


def test_reused_model_trains_exactly_like_a_fresh_one():
    """A search's model cache keeps the compiled model but must start from the same weights, dropout
    state and optimizer state as a fresh build: the trained weights are bit-identical."""
    from pipeline.core.runtime import set_seed
    from pipeline.spec.vocabulary import NetworkSpec, OptimizerSpec
    from pipeline.training.context import ModelCache

    rng = np.random.default_rng(1)
    x, y = rng.random((64, 20), dtype=np.float32), np.repeat(np.arange(4), 16)
    build = dict(n_features=20, n_outputs=4)
    optimizer = OptimizerSpec(name="adam", learning_rate=0.01)
    cache = ModelCache()

    def trained(models, init_mode):
        set_seed(5)
        model = models.solo(NetworkSpec(hidden_layers=(16,), dropout=0.3, init_mode=init_mode), optimizer, **build)
        model.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False)
        return model, [w.copy() for w in model.get_weights()]

    first, _ = trained(cache, "he_normal")
    again, reused = trained(cache, "glorot_uniform")
    assert again is first  # the compiled model was reused ...
    _, fresh = trained(ModelCache(), "glorot_uniform")
    assert all(np.array_equal(a, b) for a, b in zip(reused, fresh))  # ... and trained identically
