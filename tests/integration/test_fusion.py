"""Fused candidate training: towers equal solo fits, and fused searches report per-candidate results."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from conftest import run_main, write_config

from pipeline.spec.vocabulary import NetworkSpec, OptimizerSpec, ScheduleSpec

TOWERS = [
    {"hidden_layers": (32, 16), "activation": "relu", "init_mode": "he_normal", "dropout": 0.2},
    {"hidden_layers": (16, 16), "activation": "tanh", "init_mode": "glorot_uniform", "l2": 0.001, "bias_l1": 0.001},
    {"hidden_layers": (32, 8), "activation": "relu", "init_mode": "uniform(-0.2, 0.2)", "l1": 0.0005, "dropout": 0.3},
]


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X[:600] / 16).astype("float32"), y[:600]


def _solo(tower: dict, X, y, optimizer: OptimizerSpec, schedule: ScheduleSpec = ScheduleSpec(), **fit):
    """The candidate trained alone through the search's own estimator: (weights, history)."""
    from pipeline.spec.vocabulary import OPTIMIZER, SCHEDULE
    from pipeline.tuning.estimator import PipelineClassifier

    estimator = PipelineClassifier(random_state=5, **OPTIMIZER.params(optimizer), **SCHEDULE.params(schedule),
                                   **{f"model__{k}": v for k, v in tower.items()}, **fit)
    estimator.fit(X, y)
    return estimator.model_.get_weights(), estimator.history_


# The README's tolerance for "each tower is the candidate trained alone" (float32 arithmetic in
# another order: one stacked product instead of one per tower), for weights and per-epoch histories.
WEIGHT_ATOL, WEIGHT_RTOL = 2e-5, 1e-4

# Per tower: its own optimizer settings (one kind per program) and its own epoch schedule.
SETTINGS = {
    "sgd": [OptimizerSpec(name="sgd", learning_rate=0.05, momentum=0.9, nesterov=True, decay=0.001),
            OptimizerSpec(name="sgd", learning_rate=0.1),
            OptimizerSpec(name="sgd", learning_rate=0.02, momentum=0.5, decay=0.01)],
    "rmsprop": [OptimizerSpec(name="rmsprop", learning_rate=0.003),
                OptimizerSpec(name="rmsprop", learning_rate=0.001, rho=0.8, momentum=0.5, epsilon=1e-6),
                OptimizerSpec(name="rmsprop", learning_rate=0.002, decay=0.001)],
    "adam": [OptimizerSpec(name="adam", learning_rate=0.002, beta_1=0.85),
             OptimizerSpec(name="adam", learning_rate=0.001, beta_2=0.99, epsilon=1e-6),
             OptimizerSpec(name="adam", learning_rate=0.003, decay=0.001)],
    "sgd-schedules": [OptimizerSpec(name="sgd", learning_rate=0.1, momentum=0.8),
                      OptimizerSpec(name="sgd", learning_rate=0.05),
                      OptimizerSpec(name="sgd", learning_rate=0.08, momentum=0.9, nesterov=True)],
    # one setting for every tower (a grid over the network): the programs multiplying by scalars
    "rmsprop-shared": [OptimizerSpec(name="rmsprop", learning_rate=0.003)] * 3,
    "sgd-shared": [OptimizerSpec(name="sgd", learning_rate=0.1, decay=0.001)] * 3,
}
SCHEDULES = [ScheduleSpec(name="exponential", k=0.3), ScheduleSpec(name="step", drop=0.5, epochs_drop=2),
             ScheduleSpec(name="warm_restarts", period=2, min_lr=0.001)]


@pytest.mark.parametrize("settings, shuffle", [
    ("rmsprop", False), ("rmsprop", True), ("sgd", True), ("adam", True), ("sgd-schedules", True),
    ("rmsprop-shared", True), ("sgd-shared", True),
], ids=["rmsprop-unshuffled", "rmsprop", "sgd-momentum-nesterov-decay", "adam", "sgd-schedules", "rmsprop-shared",
        "sgd-shared"])
def test_fused_towers_are_the_candidates_trained_alone(digits, settings, shuffle):
    """Every tower's weights and per-epoch history (loss, accuracy, validation metrics, learning
    rate) after fused training equal those of the same candidate trained alone (the search's own
    estimator), for towers that differ in width, activation, initializer, penalties, dropout, and
    in every optimizer setting (learning rate, time decay, momentum, Nesterov, rho, betas,
    epsilon) and epoch schedule: each tower starts from the solo model's weights and dropout
    streams, is updated with its own settings, and sees the batches the solo fit draws."""
    from pipeline.training.towers import fit_towers, tower_weights
    from pipeline.tuning.estimator import seeding

    X, y = digits
    fit = dict(epochs=4, batch_size=32, validation_split=0.1, shuffle=shuffle)
    towers = [NetworkSpec(**t) for t in TOWERS]
    optimizers = SETTINGS[settings]
    schedules = SCHEDULES if settings.endswith("schedules") else [ScheduleSpec()] * len(towers)
    fused = fit_towers(towers, X, y, task="classification", optimizers=optimizers, schedules=schedules, seed=5,
                       seeding=seeding, **fit)
    program = fused.model.optimizer
    assert (program.shared, program.momentum) == (settings.endswith("shared"), any(o.momentum for o in optimizers))
    for t, (fused_weights, spec) in enumerate(zip(tower_weights(fused.model, towers), TOWERS)):
        solo_weights, solo_history = _solo(spec, X, y, optimizers[t], schedules[t], **fit)
        assert [w.shape for w in fused_weights] == [w.shape for w in solo_weights]
        for fused_w, solo_w in zip(fused_weights, solo_weights):
            np.testing.assert_allclose(fused_w, solo_w, atol=WEIGHT_ATOL, rtol=WEIGHT_RTOL)
        assert set(fused.histories[t]) == set(solo_history) == {"loss", "accuracy", "val_loss", "val_accuracy",
                                                                "learning_rate"}
        for name, values in solo_history.items():
            np.testing.assert_allclose(fused.histories[t][name], values, atol=WEIGHT_ATOL, rtol=WEIGHT_RTOL,
                                       err_msg=f"tower {t}: {name}")


def test_towers_with_fewer_epochs_are_the_candidates_trained_for_those_epochs(digits):
    """Epochs as a shared prefix: one program runs 4 epochs; the towers of 2 and 3 epochs are
    scored from their outputs when their last epoch ended and their histories end there, equal
    to the same candidates trained alone for 2 and 3 epochs (dropout and time decay included)."""
    from pipeline.training.towers import fit_towers
    from pipeline.tuning.estimator import seeding

    X, y = digits
    X_test = X[:100]
    epochs = [2, 4, 3]
    optimizers = SETTINGS["sgd"]
    fit = dict(batch_size=32, validation_split=0.1, shuffle=True)
    fused = fit_towers([NetworkSpec(**t) for t in TOWERS], X, y, task="classification", optimizers=optimizers,
                       epochs=epochs, seed=5, seeding=seeding, score_on=(X_test,), **fit)
    assert sorted(fused.snapshots) == [0, 1, 2]  # every tower scored where it ended
    for t, spec in enumerate(TOWERS):
        from pipeline.spec.vocabulary import OPTIMIZER
        from pipeline.tuning.estimator import PipelineClassifier

        solo = PipelineClassifier(random_state=5, epochs=epochs[t], **OPTIMIZER.params(optimizers[t]),
                                  **{f"model__{k}": v for k, v in spec.items()}, **fit).fit(X, y)
        assert {name: len(values) for name, values in fused.histories[t].items()} == \
            {name: epochs[t] for name in solo.history_}
        for name, values in solo.history_.items():
            np.testing.assert_allclose(fused.histories[t][name], values, atol=WEIGHT_ATOL, rtol=WEIGHT_RTOL)
        np.testing.assert_allclose(fused.view(t).predict_proba(X_test), solo.model_.predict(X_test, verbose=0),
                                   atol=WEIGHT_ATOL, rtol=WEIGHT_RTOL)


@pytest.mark.parametrize("settings", ["adam", "sgd-schedules"])
def test_towers_continued_from_their_state_are_the_longer_solo_fits(digits, settings):
    """Halving's continuation: towers trained 2 epochs keep their state (weights, optimizer
    steps and slots, dropout streams, history); continued in a new program for 3 and then 5
    or 4 epochs in all, each equals its candidate trained alone for that many epochs from the
    start (time decay, Adam's step count and epoch schedules included)."""
    from pipeline.spec.vocabulary import OPTIMIZER, SCHEDULE
    from pipeline.training.context import ModelCache
    from pipeline.training.towers import fit_towers, tower_weights
    from pipeline.tuning.estimator import PipelineClassifier, seeding

    X, y = digits
    towers, optimizers = [NetworkSpec(**t) for t in TOWERS], SETTINGS[settings]
    schedules = SCHEDULES if settings.endswith("schedules") else [ScheduleSpec()] * len(towers)
    fit = dict(batch_size=32, validation_split=0.1, shuffle=True)
    common = dict(task="classification", optimizers=optimizers, schedules=schedules, seed=5, seeding=seeding,
                  keep_states=True, cache=ModelCache(), **fit)
    first = fit_towers(towers, X, y, epochs=2, **common)
    assert sorted(first.states) == [0, 1, 2] and {s.epochs for s in first.states.values()} == {2}
    second = fit_towers(towers, X, y, epochs=3, start=[first.states[t] for t in range(3)], **common)
    epochs, X_test = [5, 4, 5], X[:100]
    last = fit_towers(towers, X, y, epochs=epochs, start=[second.states[t] for t in range(3)], score_on=(X_test,),
                      **common)
    for t, spec in enumerate(TOWERS):
        solo = PipelineClassifier(random_state=5, epochs=epochs[t], **OPTIMIZER.params(optimizers[t]),
                                  **SCHEDULE.params(schedules[t]), **{f"model__{k}": v for k, v in spec.items()},
                                  **fit).fit(X, y)
        assert {name: len(values) for name, values in last.histories[t].items()} == \
            {name: epochs[t] for name in solo.history_}
        for name, values in solo.history_.items():
            np.testing.assert_allclose(last.histories[t][name], values, atol=WEIGHT_ATOL, rtol=WEIGHT_RTOL,
                                       err_msg=f"tower {t}: {name}")
        np.testing.assert_allclose(last.view(t).predict_proba(X_test), solo.model_.predict(X_test, verbose=0),
                                   atol=WEIGHT_ATOL, rtol=WEIGHT_RTOL)
        if epochs[t] == max(epochs):
            for fused_w, solo_w in zip(tower_weights(last.model, towers)[t], solo.model_.get_weights()):
                np.testing.assert_allclose(fused_w, solo_w, atol=WEIGHT_ATOL, rtol=WEIGHT_RTOL)


def test_folds_in_one_program_are_each_fold_trained_alone(digits):
    """Fold fusion: three candidates on two folds of different sizes (399 and 400 samples: each
    fold's training set its own input, gathered by row number in the order its solo fit shuffles
    it, split as it splits it, the shorter fold padded and its last batch weighted) equal the six
    solo fits: weights, per-epoch histories and outputs on each fold's test samples (scored from
    one prediction of every tower on all the samples)."""
    from sklearn.model_selection import StratifiedKFold

    from pipeline.spec.vocabulary import OPTIMIZER
    from pipeline.training.towers import fit_towers, tower_weights
    from pipeline.tuning.estimator import PipelineClassifier, seeding

    X, y = digits
    X, y = X[:599], y[:599]
    splits = list(StratifiedKFold(n_splits=3, shuffle=True, random_state=0).split(X, y))
    folds = [min(splits, key=lambda split: len(split[0])), max(splits, key=lambda split: len(split[0]))]
    assert [len(train) for train, _ in folds] == [399, 400]
    towers = [NetworkSpec(**t) for t in TOWERS] * 2
    optimizers = SETTINGS["sgd"] * 2
    fit = dict(epochs=3, batch_size=32, validation_split=0.1, shuffle=True)
    fused = fit_towers(towers, X, y, folds=[train for train, _ in folds], task="classification",
                       optimizers=optimizers, seed=5, seeding=seeding, score_on=(X,), **fit)
    weights = tower_weights(fused.model, towers)
    for t in range(len(towers)):
        fold, member = divmod(t, len(TOWERS))
        train, test = folds[fold]
        solo = PipelineClassifier(random_state=5, **OPTIMIZER.params(optimizers[t]),
                                  **{f"model__{k}": v for k, v in TOWERS[member].items()}, **fit).fit(X[train], y[train])
        for fused_w, solo_w in zip(weights[t], solo.model_.get_weights()):
            np.testing.assert_allclose(fused_w, solo_w, atol=WEIGHT_ATOL, rtol=WEIGHT_RTOL, err_msg=f"tower {t}")
        for name, values in solo.history_.items():
            np.testing.assert_allclose(fused.histories[t][name], values, atol=WEIGHT_ATOL, rtol=WEIGHT_RTOL,
                                       err_msg=f"tower {t}: {name}")
        np.testing.assert_allclose(fused.view(t, of=X).predict_proba(test),
                                   solo.model_.predict(X[test], verbose=0), atol=WEIGHT_ATOL, rtol=WEIGHT_RTOL)


def test_folds_with_different_batch_counts_cannot_share_a_program(digits):
    from pipeline.training.towers import fit_towers

    X, y = digits
    with pytest.raises(ValueError, match="same number of batches per epoch"):  # 64 samples: 2 batches; 65: 3
        fit_towers([NetworkSpec(hidden_layers=[8])] * 2, X, y, folds=[np.arange(64), np.arange(100, 165)],
                   task="classification", optimizers=[OptimizerSpec(name="sgd")] * 2, epochs=1, batch_size=32)


@pytest.mark.parametrize("restore", [True, False], ids=["restore-best", "keep-last"])
def test_each_tower_stops_early_where_its_solo_fit_stops(digits, restore):
    """Per-tower EarlyStopping (Keras' own, on each tower's logs): towers with different monitors
    and patience stop where their solo fits stop (histories cut there), a tower restores its best
    weights as the solo fit does, and a tower without early stopping runs all epochs."""
    from pipeline.spec.vocabulary import EARLY_STOPPING, OPTIMIZER, EarlyStoppingSpec
    from pipeline.training.towers import fit_towers
    from pipeline.tuning.estimator import PipelineClassifier, seeding

    X, y = digits
    X_test = X[:100]
    optimizers = [OptimizerSpec(name="sgd", learning_rate=0.1, momentum=0.5)] * 3
    stopping = [EarlyStoppingSpec(enabled=True, monitor="val_loss", patience=0, restore_best_weights=restore),
                EarlyStoppingSpec(enabled=True, monitor="val_accuracy", patience=1, min_delta=0.01,
                                  restore_best_weights=restore),
                None]
    fit = dict(epochs=8, batch_size=32, validation_split=0.2, shuffle=True)
    fused = fit_towers([NetworkSpec(**t) for t in TOWERS], X, y, task="classification", optimizers=optimizers,
                       early_stopping=stopping, seed=5, seeding=seeding, score_on=(X_test,), **fit)
    lengths = []
    for t, spec in enumerate(TOWERS):
        solo = PipelineClassifier(random_state=5, **OPTIMIZER.params(optimizers[t]),
                                  **EARLY_STOPPING.params(stopping[t] or EarlyStoppingSpec()),
                                  **{f"model__{k}": v for k, v in spec.items()}, **fit).fit(X, y)
        lengths.append(len(solo.history_["loss"]))
        assert {name: len(values) for name, values in fused.histories[t].items()} == \
            {name: len(values) for name, values in solo.history_.items()}
        for name, values in solo.history_.items():
            np.testing.assert_allclose(fused.histories[t][name], values, atol=WEIGHT_ATOL, rtol=WEIGHT_RTOL)
        np.testing.assert_allclose(fused.view(t).predict_proba(X_test), solo.model_.predict(X_test, verbose=0),
                                   atol=WEIGHT_ATOL, rtol=WEIGHT_RTOL)
    assert min(lengths) < 8 and lengths[2] == 8, lengths  # some tower really stopped early


def test_each_tower_starts_as_its_own_two_dimensional_layer():
    """A stacked (towers, in, out) kernel must not be initialised as one tensor (wrong fan-in/out):
    tower slices equal the candidate's own initial weights and have He's spread sqrt(2 / 784)."""
    from pipeline.training.towers import build_fused_model, initial_state, set_initial_state, tower_weights

    towers = [NetworkSpec(hidden_layers=(64,), init_mode="he_normal"), NetworkSpec(hidden_layers=(64,), init_mode="zeros")]
    initial = [initial_state(t, 784, 10, "softmax", seed=1) for t in towers]
    model = build_fused_model(towers, 784, 10, task="classification", optimizer="sgd")
    set_initial_state(model, initial)
    copied = tower_weights(model, towers)
    for mine, own in zip(copied, [state.weights for state in initial]):
        for a, b in zip(mine, own):
            np.testing.assert_array_equal(a, b)
    first_kernel = copied[0][0]
    assert first_kernel.shape == (784, 64)
    assert first_kernel.std() == pytest.approx(np.sqrt(2 / 784), rel=0.1)  # stacked fan-in would give /sqrt(2)
    assert not copied[1][0].any()


def _search(tmp_path, name, **execution):
    from pipeline.search import main

    config = write_config(tmp_path, f"{name}.yaml", experiment=name, execution=execution,
                          callbacks={"early_stopping": {"enabled": True, "patience": 0}}, search={
        "strategy": "grid", "params": [{"model__init_mode": ["he_normal", "zeros"], "model__hidden_layers": [[16], [8]],
                                        "optimizer__learning_rate": [0.01, 0.003]},
                                       {"model__init_mode": ["he_normal"], "epochs": [1]}]})
    assert run_main(main, ["--config", config, "--output-dir", tmp_path / name, "--quiet"]) == 0
    (run_dir,) = (tmp_path / name).iterdir()
    return run_dir


def test_a_fused_search_reports_what_separate_fits_report(tmp_path):
    """The same grid (initializers, widths, learning rates and a 1-epoch candidate, with early
    stopping: 9 candidates x 2 folds, one program) with fusing on and off: equal per-candidate
    scores, fused fits marked as such in results.csv, the journal and run.json."""
    fused_dir = _search(tmp_path, "fused", max_towers=18)
    alone_dir = _search(tmp_path, "alone", fuse=False)
    fused, alone = (pd.read_csv(d / "results.csv").sort_values("candidate") for d in (fused_dir, alone_dir))
    for column in ("fold0_test_score", "fold1_test_score", "mean_train_score"):
        np.testing.assert_allclose(fused[column], alone[column], atol=1e-9)
    assert fused.loc[fused["model__init_mode"] == "zeros", "mean_test_score"].max() < 0.2
    assert (fused["fused_towers"] == 18).all() and (alone["fused_towers"] == 0).all()
    records = [json.loads(line) for line in (fused_dir / "journal.jsonl").read_text().splitlines()]
    assert len(records) == 9 * 2 and len({(r["key"], r["fold"]) for r in records}) == 18
    assert {r["trainer"]["fused"]["towers"] for r in records} == {18} and all(r["history"]["loss"] for r in records)
    assert sorted({len(r["history"]["loss"]) for r in records}) == [1, 2]  # the 1-epoch candidate: a prefix
    run = json.loads((fused_dir / "run.json").read_text())
    assert run["fused_candidates"] == list(range(9))
    assert json.loads((alone_dir / "run.json").read_text())["fused_candidates"] == []


HALVING = {"strategy": "halving-grid", "resource": "epochs", "factor": 2, "min_resources": 1,
           "params": {"model__init_mode": ["he_normal", "zeros", "glorot_uniform", "lecun_uniform"]}}


def _halving(tmp_path, name, **execution):
    from pipeline.search import main

    config = write_config(tmp_path, f"{name}.yaml", experiment=name, execution=execution, search=HALVING,
                          model={"hidden_layers": [16], "dropout": 0.2}, training={"epochs": 4, "batch_size": 32})
    assert run_main(main, ["--config", config, "--output-dir", tmp_path / name, "--quiet"]) == 0
    (run_dir,) = (tmp_path / name).iterdir()
    return run_dir


def test_halving_continues_survivors_with_the_results_of_retraining_them(tmp_path):
    """Halving over epochs (4 candidates at 1 epoch, 2 at 2, 1 at 4; 2 folds): fused, each
    round's survivors continue from where the last round left them; the results (scores of every
    round, ranks, who is promoted, histories) equal those of the search trained alone, where
    scikit-learn retrains every round from scratch."""
    fused_dir, alone_dir = _halving(tmp_path, "fused"), _halving(tmp_path, "alone", fuse=False)
    fused, alone = (pd.read_csv(d / "results.csv").sort_values(["iter", "candidate"]) for d in (fused_dir, alone_dir))
    assert list(fused["iter"]) == list(alone["iter"]) == [0, 0, 0, 0, 1, 1, 2]
    for column in ("fold0_test_score", "fold1_test_score", "mean_train_score", "rank", "n_resources"):
        np.testing.assert_allclose(fused[column], alone[column], atol=1e-9, err_msg=column)
    records = [json.loads(line) for line in (fused_dir / "journal.jsonl").read_text().splitlines()]
    continued = Counter(r["trainer"]["fused"].get("continued_from") for r in records)
    assert continued == {None: 8, 1: 4, 2: 2}  # round 0 from scratch; rounds 1 and 2 continued
    histories = {(r["key"], r["fold"]): r["history"] for r in
                 (json.loads(line) for line in (alone_dir / "journal.jsonl").read_text().splitlines())}
    for record in records:
        for name, values in histories[record["key"], record["fold"]].items():
            np.testing.assert_allclose(record["history"][name], values, atol=WEIGHT_ATOL, rtol=WEIGHT_RTOL)
    assert json.loads((fused_dir / "run.json").read_text())["continued_fits"] == 6
    assert json.loads((alone_dir / "run.json").read_text())["continued_fits"] == 0
    assert not (fused_dir / "continuations").exists()  # removed once the search is done


PRUNED = {"strategy": "random", "n_iter": 6, "batch": 3, "pruning": {"min_epochs": 1, "reduction": 2},
          "params": {"model__init_mode": ["he_normal", "zeros", "glorot_uniform", "lecun_uniform"],
                     "optimizer__learning_rate": {"distribution": "loguniform", "low": 0.001, "high": 0.03}}}


def test_pruned_search_continues_at_each_rung_with_the_results_of_retraining(tmp_path):
    """search.pruning (rungs at 1 and 2 epochs of 4, halving the field per rung, 2 batches of 3
    random candidates): fused, a rung's survivors continue from their towers' states; the scores
    at every rung, and so who is pruned, equal the same search trained alone from scratch."""
    from pipeline.search import main

    runs = {}
    for name, execution in {"fused": {}, "alone": {"fuse": False}}.items():
        config = write_config(tmp_path, f"{name}.yaml", experiment=name, execution=execution, search=PRUNED,
                              model={"hidden_layers": [16], "dropout": 0.2}, training={"epochs": 4, "batch_size": 32})
        assert run_main(main, ["--config", config, "--output-dir", tmp_path / name, "--quiet"]) == 0
        (runs[name],) = (tmp_path / name).iterdir()
    fused, alone = (pd.read_csv(runs[name] / "results.csv").sort_values("candidate") for name in ("fused", "alone"))
    assert list(fused["iter"]) == list(alone["iter"]) and list(fused["n_resources"]) == list(alone["n_resources"])
    for column in ("fold0_test_score", "fold1_test_score", "rank"):
        np.testing.assert_allclose(fused[column], alone[column], atol=1e-9, err_msg=column)
    summary = json.loads((runs["fused"] / "run.json").read_text())["pruning"]
    assert summary == json.loads((runs["alone"] / "run.json").read_text())["pruning"]
    reached = summary["reached"]
    assert summary["rungs"] == [1, 2, 4] and reached[0] == 6 and reached[0] > reached[1] > 0 and reached[2] >= 1
    assert list(Counter(fused["iter"]).values()) == reached
    records = [json.loads(line) for line in (runs["fused"] / "journal.jsonl").read_text().splitlines()]
    continued = Counter(r["trainer"]["fused"].get("continued_from") for r in records)
    assert continued == {None: 6 * 2, 1: reached[1] * 2, 2: reached[2] * 2}
    assert not (runs["fused"] / "continuations").exists()
    report = (runs["fused"] / "report.md").read_text()
    assert "Pruning (search.pruning; rungs at epochs 1, 2 of 4): 6 candidates started" in report
    assert f"random search, 6 candidates ({sum(reached)} evaluations at the rungs) x 2 folds" in report
    assert "![Score per pruning rung](plots/pruning_rungs.png)" in report


def test_tower_states_round_trip_and_a_damaged_one_is_ignored(tmp_path):
    from pipeline.training.towers import TowerState
    from pipeline.tuning.continuations import TowerStates

    states = TowerStates(tmp_path)
    state = TowerState(epochs=3, iterations=42, weights=[np.ones((4, 2), "float32"), np.zeros(2, "float32")],
                       slots={"momentum": [np.full((4, 2), 0.5, "float32"), np.ones(2, "float32")]},
                       dropout_seeds=[np.array([1, 2], "int64")], history={"loss": [0.9, 0.5, 0.4]})
    states.add("cand", "fold", state)
    states.add("cand", "fold", TowerState(9, 99, [], {}, []))
    assert states.latest("cand", "fold", before=3) is None and states.latest("other", "fold", before=9) is None
    back = states.latest("cand", "fold", before=9)
    assert (back.epochs, back.iterations, back.history) == (3, 42, {"loss": [0.9, 0.5, 0.4]})
    for got, want in zip(back.weights + back.slots["momentum"] + back.dropout_seeds,
                         state.weights + state.slots["momentum"] + state.dropout_seeds):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
    (tmp_path / "continuations" / "cand-fold-00003.npz").write_bytes(b"not a state")
    assert states.latest("cand", "fold", before=9) is None  # trains from the start instead
    states.clear()
    assert not (tmp_path / "continuations").exists()


def test_a_reused_fused_model_trains_like_a_new_one(digits):
    """The next fold reuses the last fused model (no retracing): same result as a freshly built one,
    dropout included; towers with other optimizer settings than the program was made for get another."""
    from pipeline.training.context import ModelCache
    from pipeline.training.towers import fit_towers
    from pipeline.tuning.estimator import seeding

    X, y = digits
    spec = [NetworkSpec(hidden_layers=(16,), init_mode=mode, dropout=0.2) for mode in ("he_normal", "lecun_uniform")]
    cache = ModelCache()
    fit = dict(task="classification", optimizers=[OptimizerSpec(name="adam", learning_rate=0.01)] * 2, epochs=2,
               batch_size=32, seed=3, seeding=seeding)
    first = fit_towers(spec, X[:300], y[:300], cache=cache, **fit)
    reused = fit_towers(spec, X[300:], y[300:], cache=cache, **fit)
    assert reused.model is first.model
    reused_weights = [w.copy() for w in reused.model.get_weights()]
    fresh = fit_towers(spec, X[300:], y[300:], cache=ModelCache(), **fit)  # another search's cache: a new model
    assert fresh.model is not first.model
    for a, b in zip(reused_weights, fresh.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert reused.histories == fresh.histories
    other_initializers = [tower.model_copy(update={"init_mode": "glorot_normal"}) for tower in spec]
    assert fit_towers(other_initializers, X[:300], y[:300], cache=cache, **fit).model is first.model
    # one setting for both towers made a program of scalars: towers with two settings need another
    different = [OptimizerSpec(name="adam", learning_rate=rate) for rate in (0.01, 0.02)]
    with pytest.raises(ValueError, match="need another fused program"):
        first.model.optimizer.set_towers(different)
    assert fit_towers(spec, X[:300], y[:300], cache=cache, **{**fit, "optimizers": different}).model is not first.model


def test_a_fused_model_reused_with_other_dropout_rates_trains_like_a_new_one(digits):
    """Dropout rates are settings of a program, not its shape (what pbt perturbs every interval):
    the program built for rates 0.2 and 0.4 trains towers at 0.3 and 0.1 as a new one does; a
    tower that drops nothing where the program's dropped needs another program."""
    from pipeline.training.context import ModelCache
    from pipeline.training.towers import fit_towers
    from pipeline.tuning.estimator import seeding

    X, y = digits
    def towers(*rates):
        return [NetworkSpec(hidden_layers=(16, 8), init_mode="he_normal", dropout=rate) for rate in rates]

    cache = ModelCache()
    fit = dict(task="classification", optimizers=[OptimizerSpec(name="sgd", learning_rate=0.05)] * 2, epochs=2,
               batch_size=32, seed=3, seeding=seeding)
    first = fit_towers(towers(0.2, 0.4), X[:300], y[:300], cache=cache, **fit)
    reused = fit_towers(towers(0.3, 0.1), X[:300], y[:300], cache=cache, **fit)
    assert reused.model is first.model
    reused_weights = [w.copy() for w in reused.model.get_weights()]
    fresh = fit_towers(towers(0.3, 0.1), X[:300], y[:300], cache=ModelCache(), **fit)
    for a, b in zip(reused_weights, fresh.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert reused.histories == fresh.histories
    assert fit_towers(towers(0.3, 0.0), X[:300], y[:300], cache=cache, **fit).model is not first.model


def test_groups_train_in_worker_processes_with_the_same_results(tmp_path):
    """n_jobs=2 with four groups (max_towers=2, 2 folds): half the fits run in one worker
    process, half in this one, and score what the in-process run scores, to within 0.01
    accuracy: a worker runs TensorFlow on 1 thread (cores / n_jobs) and this process on 2, so
    sums are reduced in another order, and float32 rounding differences of ~1e-7 grow over
    training into an occasional different prediction (one test digit of 150 is 0.0067)."""
    import os

    from pipeline.search import main

    params = {"model__init_mode": ["glorot_uniform", "he_normal", "lecun_uniform", "zeros"]}
    runs = {}
    for jobs in (1, 2):
        config = write_config(tmp_path, f"jobs{jobs}.yaml", experiment=f"jobs{jobs}",
                              search={"strategy": "grid", "params": params}, execution={"n_jobs": jobs, "max_towers": 2})
        assert run_main(main, ["--config", config, "--output-dir", tmp_path / f"jobs{jobs}", "--quiet"]) == 0
        (runs[jobs],) = (tmp_path / f"jobs{jobs}").iterdir()
    records = [json.loads(line) for line in (runs[2] / "journal.jsonl").read_text().splitlines()]
    trainers = {r["trainer"]["pid"] for r in records}
    assert len(records) == 8 and len(trainers) == 2 and os.getpid() in trainers
    assert sum(r["trainer"]["pid"] == os.getpid() for r in records) == 4
    in_process = map(json.loads, (runs[1] / "journal.jsonl").read_text().splitlines())
    assert {r["trainer"]["pid"] for r in in_process} == {os.getpid()}
    one, two = (pd.read_csv(run / "results.csv").sort_values("candidate") for run in (runs[1], runs[2]))
    for column in ("fold0_test_score", "fold1_test_score"):
        np.testing.assert_allclose(one[column], two[column], atol=0.01)
    assert (two["fused_towers"] == 2).all()


def test_a_diverging_tower_fails_alone(tmp_path):
    """A tower whose loss becomes NaN is recorded failed with the reason; its group mates are scored."""
    from pipeline.search import main

    config = write_config(tmp_path, data={"name": "quadratic", "samples": 200}, model={"hidden_layers": [8]},
                          optimizer={"name": "sgd", "learning_rate": 0.05}, training={"epochs": 3, "batch_size": 16},
                          search={"strategy": "grid", "params": {"model__init_mode": ["glorot_uniform", "uniform(-1000, 1000)"]}})
    assert run_main(main, ["--config", config, "--output-dir", tmp_path / "out", "--quiet"]) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    results = pd.read_csv(run_dir / "results.csv", keep_default_na=False).set_index("model__init_mode")
    assert results.loc["uniform(-1000, 1000)", "error"].startswith("TrainingDiverged: loss became nan")
    assert results.loc["uniform(-1000, 1000)", "mean_test_score"] == ""  # NaN, written as an empty cell
    assert results.loc["glorot_uniform", "error"] == "" and float(results.loc["glorot_uniform", "mean_test_score"]) < 0
    assert (results["fused_towers"] == 4).all()  # 2 candidates x 2 folds, one program
