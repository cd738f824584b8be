"""search.strategy pbt trained for real: members continue from the states they took over, the
refit trains the winner's schedule as the search's own estimator would, and the run's files
tell the lineage."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import run_main, write_config
from test_fusion import WEIGHT_ATOL, WEIGHT_RTOL

from pipeline.search import main

SEARCH = {"strategy": "pbt", "pbt": {"population": 4, "interval": 1, "resample": 0.0}, "params": {
    "optimizer__learning_rate": {"distribution": "loguniform", "low": 0.001, "high": 0.05},
    "model__hidden_layers": [[12], [16]]}}


@pytest.fixture(scope="module")
def pbt_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pbt")
    config = write_config(folder, training={"epochs": 3, "batch_size": 32}, search=SEARCH)
    assert run_main(main, ["--config", config, "--output-dir", folder / "outputs", "--quiet"]) == 0
    (run_dir,) = (folder / "outputs").iterdir()
    return run_dir


def test_members_that_take_over_continue_from_their_leaders_states(pbt_run):
    info = json.loads((pbt_run / "run.json").read_text())
    results = pd.read_csv(pbt_run / "results.csv")
    histories = pd.read_csv(pbt_run / "fit_histories.csv")
    assert len(results) == 4 * 3 and sorted(results["n_resources"].unique()) == [1, 2, 3]
    assert info["continued_fits"] == 4 * 2 * 2  # every fit after the first interval, on both folds
    summary = info["pbt"]
    takeovers = [(member, step) for member in summary["members"] for step in member["steps"] if step["from"] is not None]
    assert len(takeovers) == 2  # one member of four (fraction 0.25) after each of the first two intervals
    for member, step in takeovers:
        epochs = step["epochs"]
        leader = next(m for m in summary["members"] if m["member"] == step["from"])
        before = next(s for s in leader["steps"] if s["epochs"] == epochs - 1)
        assert before["score"] >= max(s["score"] for m in summary["members"] for s in m["steps"]
                                      if s["epochs"] == epochs - 1) - 1e-12, "it took over the best"
        rate = step["params"]["optimizer__learning_rate"] / before["params"]["optimizer__learning_rate"]
        assert math.isclose(rate, 0.8) or math.isclose(rate, 1.2)
        # fold by fold, its history before the take-over is the leader's: it trained on from its weights
        taker = results[(results["n_resources"] == epochs) & results["member"].str.startswith(f"m{member['member']}.")]
        led = results[(results["n_resources"] == epochs - 1) & results["member"].str.startswith(f"m{leader['member']}.")]
        (taker_row,), (led_row,) = taker["candidate"], led["candidate"]
        assert taker["model__hidden_layers"].item() == led["model__hidden_layers"].item()
        for fold, own in histories[histories["candidate"] == taker_row].groupby("fold"):
            theirs = histories[(histories["candidate"] == led_row) & (histories["fold"] == fold)]
            assert len(own) == epochs
            np.testing.assert_allclose(own["loss"].to_numpy()[:epochs - 1], theirs["loss"].to_numpy())
            assert not np.isclose(own["learning_rate"].iloc[-1], theirs["learning_rate"].iloc[-1])


def test_the_saved_model_is_the_winners_schedule_refitted(pbt_run):
    info = json.loads((pbt_run / "run.json").read_text())
    winner = info["best_params"]["member"]
    assert info["pbt"]["winner"] == winner and info["best_params"]["epochs"] == 3
    history = pd.read_csv(pbt_run / "history.csv")
    schedule = info["pbt"]["schedule"]
    assert [entry["epochs"] for entry in schedule] == [1, 2, 3]
    np.testing.assert_allclose(history["learning_rate"], [e["optimizer__learning_rate"] for e in schedule], rtol=1e-6)
    assert 0 <= info["test_accuracy"] <= 1 and (pbt_run / "best_model" / "model.keras").exists()
    report = (pbt_run / "report.md").read_text()
    assert "## Population-based training" in report and f"The winner ended as {winner}" in report
    assert (pbt_run / "plots" / "pbt_population.png").stat().st_size > 10_000
    assert not (pbt_run / "continuations").exists()


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X[:500] / 16).astype("float32"), y[:500]


def _estimator(**params):
    from pipeline.tuning.estimator import PipelineClassifier

    return PipelineClassifier(random_state=5, optimizer="sgd", optimizer__momentum=0.9, model__hidden_layers=(16,),
                              batch_size=32, validation_split=0.1, **params)


def test_a_schedule_refit_is_the_estimators_fit_with_those_rates(digits):
    """Changing the learning rate between intervals equals a solo fit whose step schedule makes
    the same change (momentum carried over), and a schedule of one setting is the plain fit."""
    from pipeline.training.context import TrainingContext
    from pipeline.tuning.pbt import refit_schedule

    X, y = digits
    changed = refit_schedule(_estimator(), [(2, {"optimizer__learning_rate": 0.1}),
                                            (4, {"optimizer__learning_rate": 0.05})], X, y, TrainingContext())
    stepped = _estimator(optimizer__learning_rate=0.1, lr_schedule="step", lr_schedule__drop=0.5,
                         lr_schedule__epochs_drop=2, epochs=4).fit(X, y)
    plain = _estimator(optimizer__learning_rate=0.1, epochs=3).fit(X, y)
    same = refit_schedule(_estimator(), [(1, {"optimizer__learning_rate": 0.1}),
                                         (3, {"optimizer__learning_rate": 0.1})], X, y, TrainingContext())
    for refitted, solo in ((changed, stepped), (same, plain)):
        for fused_w, solo_w in zip(refitted.model_.get_weights(), solo.model_.get_weights()):
            np.testing.assert_allclose(fused_w, solo_w, atol=WEIGHT_ATOL, rtol=WEIGHT_RTOL)
        for name in ("loss", "val_accuracy", "learning_rate"):
            np.testing.assert_allclose(refitted.history_[name], solo.history_[name], atol=WEIGHT_ATOL, rtol=WEIGHT_RTOL)
    np.testing.assert_array_equal(changed.predict(X[:50]), stepped.predict(X[:50]))
