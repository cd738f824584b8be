"""Searches end to end on tiny data: every strategy, stratification, CSV contents, checkpoints, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, run_main, write_config
from sklearn.base import is_classifier
from sklearn.model_selection import StratifiedKFold, check_cv

from pipeline.data import load_dataset
from pipeline.search import main
from pipeline.spec.config import load_config, parse_config
from pipeline.tuning.strategies import count_fits

from conftest import PROJECT


def test_tiny_grid_run_folder(tiny_search_run):
    results = pd.read_csv(tiny_search_run / "results.csv")
    assert len(results) == 4 and list(results["rank"]) == sorted(results["rank"])
    assert {"model__init_mode", "batch_size", "mean_test_score", "std_test_score", "fold0_test_score",
            "fold1_test_score", "mean_fit_time", "mean_score_time", "error"} <= set(results.columns)
    assert set(results["model__init_mode"]) == {"zeros", "glorot_uniform"}
    zeros = results[results["model__init_mode"] == "zeros"]["mean_test_score"]
    assert zeros.max() < 0.2 < results["mean_test_score"].max()  # all-zero weights cannot learn
    folds = results[["fold0_test_score", "fold1_test_score"]].to_numpy()
    assert np.allclose(folds.mean(axis=1), results["mean_test_score"])
    cv_results = pd.read_csv(tiny_search_run / "cv_results.csv")
    assert len(cv_results) == 4 and {"params", "rank_test_score", "split1_train_score"} <= set(cv_results.columns)

    run = json.loads((tiny_search_run / "run.json").read_text())
    assert run["dataset"]["name"] == "mnist-sample" and run["dataset"]["n_train"] == 300
    assert run["best_params"]["model__init_mode"] == "glorot_uniform" and run["n_folds"] == 2
    assert {"keras", "scikeras", "scikit-learn"} <= set(run["versions"])
    metadata = json.loads((tiny_search_run / "best_model" / "metadata.json").read_text())
    assert metadata["scores"]["test_accuracy"] == run["test_accuracy"]
    assert metadata["scores"]["cv_mean"] == pytest.approx(results["mean_test_score"].iloc[0])
    assert metadata["classes"] == list(range(10))
    assert pd.read_csv(tiny_search_run / "history.csv")["epoch"].tolist() == [0, 1]
    resolved = (tiny_search_run / "config.yaml").read_text()
    assert "experiment: tiny" in resolved and "model__init_mode" in resolved


def test_classifier_tags_make_cv_stratified():
    from scikeras.wrappers import KerasClassifier

    from pipeline.tuning.run import build_estimator

    estimator = build_estimator(parse_config(TINY), "classification")
    y = np.repeat(np.arange(3), 10)
    assert is_classifier(estimator)
    assert isinstance(check_cv(3, y, classifier=is_classifier(estimator)), StratifiedKFold)
    # The trap this fixes: scikeras' own wrapper is not recognised as a classifier.
    assert not is_classifier(KerasClassifier())


def test_fitted_estimator_pickles_and_predicts_the_same():
    import pickle

    from pipeline.tuning.run import build_estimator

    estimator = build_estimator(parse_config(TINY), "classification")
    X = np.random.default_rng(0).random((40, 6)).astype("float32")
    y = np.repeat(np.arange(4), 10)
    estimator.fit(X, y)
    assert estimator.is_fit_data(X)
    copy = pickle.loads(pickle.dumps(estimator))
    np.testing.assert_array_equal(copy.predict_proba(X), estimator.predict_proba(X))
    assert not copy.is_fit_data(X)  # the weak reference to the training array stays behind


@pytest.mark.parametrize("search, expected_rows", [
    ({"strategy": "random", "n_iter": 3, "params": {
        "optimizer__learning_rate": {"distribution": "loguniform", "low": 0.001, "high": 0.05},
        "batch_size": [16, 32]}}, 3),
    ({"strategy": "halving-grid", "factor": 2, "params": {"model__init_mode": ["zeros", "he_normal", "glorot_uniform"]}},
     3 + 2),
    ({"strategy": "halving-random", "factor": 2, "n_iter": 2,
      "params": {"model__dropout": {"distribution": "uniform", "low": 0.0, "high": 0.3}}}, 2 + 1),
])
def test_strategies_end_to_end(tmp_path, search, expected_rows, capsys):
    config = write_config(tmp_path, search=search)
    assert run_main(main, ["--config", config, "--output-dir", tmp_path / "out", "--quiet"]) == 0
    out = capsys.readouterr().out
    (run_dir,) = (tmp_path / "out").iterdir()
    results = pd.read_csv(run_dir / "results.csv")
    assert len(results) == expected_rows and out.startswith("Best: ")
    assert out.count("mean=") == expected_rows
    if search["strategy"].startswith("halving"):
        assert set(results["n_resources"]) == {1, 2}  # epochs are the resource: 1 epoch, then 2
        best = json.loads((run_dir / "run.json").read_text())["best_params"]
        last_round = results[results["iter"] == results["iter"].max()]
        assert any(all(row[k] == pytest.approx(v) if isinstance(v, float) else row[k] == v for k, v in best.items())
                   for _, row in last_round.iterrows())
    else:
        rates = results["optimizer__learning_rate"]
        assert rates.between(0.001, 0.05).all() and rates.nunique() == 3


def test_dry_run_counts_and_writes_nothing(tmp_path, capsys):
    config = write_config(tmp_path, search={"strategy": "grid", "params": {
        "model__init_mode": ["zeros", "he_normal"], "batch_size": [8, 16, 32]}})
    assert run_main(main, ["--config", config, "--dry-run", "--output-dir", tmp_path / "out", "--set", "cv.folds=4"]) == 0
    assert "6 candidates x 4 folds + 1 refit = 25 fits" in capsys.readouterr().out
    assert run_main(main, ["--config", config, "--dry-run", "--set", "cv.folds=4", "--set", "cv.repeats=3"]) == 0
    assert "6 candidates x 4 folds x 3 repeats + 1 refit = 73 fits" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
    halving = parse_config({**TINY, "training": {"epochs": 9, "batch_size": 8}, "search": {
        "strategy": "halving-grid", "params": {"model__init_mode": ["zeros", "he_normal", "uniform", "normal",
                                                                     "ones", "lecun_normal", "he_uniform", "glorot_normal", "orthogonal"]}}})
    assert count_fits(halving, load_dataset(halving.data, halving.seed)).candidates == (9, 3, 1)


@pytest.mark.filterwarnings("ignore::UserWarning")  # the stand-in scores NaN on one-sample folds
@pytest.mark.parametrize("config, overrides", [
    ("halving.yaml", ["data.name=digits", "search.resource=n_samples", "search.min_resources=null"]),
    ("halving.yaml", ["data.name=digits", "search.resource=n_samples", "search.factor=2", "data.train_samples=600"]),
    ("quadratic.yaml", ["search.strategy=halving-grid", "search.resource=n_samples", "search.factor=2"]),
    ("quadratic.yaml", []),
])
def test_counts_are_the_ones_scikit_learn_runs(config, overrides):
    """The rounds counted for --dry-run and the progress bar equal the candidates scikit-learn's own
    search evaluates, with a stand-in estimator, on the real data (digits: 1,437 training samples,
    10 classes; quadratic: regression)."""
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV

    from pipeline.spec.space import param_space
    from pipeline.tuning.strategies import make_cv

    experiment = load_config(PROJECT / "configs" / config, overrides, search=True)
    data = load_dataset(experiment.data, experiment.seed)
    plan = count_fits(experiment, data)

    class Constant(ClassifierMixin if data.task == "classification" else RegressorMixin, BaseEstimator):
        def __init__(self, epochs=1, **params):
            self.epochs, self.params = epochs, params

        def set_params(self, **params):
            return self

        def fit(self, X, y):
            self.value_ = np.bincount(y).argmax() if data.task == "classification" else float(np.mean(y))
            return self

        def predict(self, X):
            return np.full(len(X), self.value_)

    cv = make_cv(experiment, data.task)
    if experiment.search.strategy == "grid":
        real = GridSearchCV(Constant(), param_space(experiment), cv=cv).fit(data.x_train, data.y_train)
        assert plan.candidates == (len(real.cv_results_["params"]),)
    else:
        search = experiment.search
        real = HalvingGridSearchCV(Constant(), param_space(experiment), cv=cv, factor=search.factor,
                                   resource=search.resource, min_resources=search.min_resources or "smallest",
                                   random_state=experiment.seed).fit(data.x_train, data.y_train)
        assert plan.candidates == tuple(real.n_candidates_) and len(plan.candidates) > 1
    assert plan.fits == sum(plan.candidates) * experiment.cv.folds + 1


def test_failed_candidate_is_recorded_and_ranked_last(tmp_path, capsys):
    config = write_config(tmp_path, optimizer={"name": "sgd", "learning_rate": 0.05},
                          schedule={"name": "exponential", "k": 0.1},
                          search={"strategy": "grid", "params": {"optimizer__decay": [0.0, 0.01]}})
    assert run_main(main, ["--config", config, "--output-dir", tmp_path / "out", "--quiet"]) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    results = pd.read_csv(run_dir / "results.csv", keep_default_na=False)
    failed = results.iloc[-1]
    assert failed["optimizer__decay"] == 0.01 and failed["mean_test_score"] == ""
    assert "cannot be combined with optimizer decay" in failed["error"]
    assert "FAILED: ValueError" in capsys.readouterr().out
    assert json.loads((run_dir / "run.json").read_text())["failed_candidates"] == {"1": failed["error"]}


def test_checkpoints_are_unique_per_candidate_and_fold_and_fused_ones_are_the_solo_files(tmp_path):
    """Each fit's best weights in a file of its own; fused towers save the very files (names,
    weights and optimizer state, to the fusion tolerance) that the fits trained alone save."""
    import h5py

    config = write_config(tmp_path, callbacks={"checkpoint": {"enabled": True, "monitor": "val_loss"}},
                          training={"epochs": 3, "batch_size": 16},
                          search={"strategy": "grid", "params": {"model__init_mode": ["he_normal", "glorot_uniform"]}})
    runs = {}
    for name, overrides in {"fused": [], "alone": ["--set", "execution.fuse=false"]}.items():
        assert run_main(main, ["--config", config, "--output-dir", tmp_path / name, "--quiet", *overrides]) == 0
        (runs[name],) = (tmp_path / name).iterdir()
    files = sorted(p.name for p in (runs["fused"] / "checkpoints").iterdir())
    # 2 candidates x 2 folds, plus the refit of the best candidate on the whole training split.
    assert len(files) == 5 and all(name.endswith(".weights.h5") for name in files)
    assert files == sorted(p.name for p in (runs["alone"] / "checkpoints").iterdir())
    assert (pd.read_csv(runs["fused"] / "results.csv")["fused_towers"] == 4).all()

    def weights(path):
        found = {}
        with h5py.File(path) as handle:
            handle.visititems(lambda key, item: found.update({key: item[()]}) if isinstance(item, h5py.Dataset) else None)
        return found

    for name in files:
        fused, alone = weights(runs["fused"] / "checkpoints" / name), weights(runs["alone"] / "checkpoints" / name)
        # 2 Dense layers' kernel and bias; Adam's step count, rate, and momentum and velocity of each
        assert fused.keys() == alone.keys() and len(fused) == 4 + 2 + 8
        for key in fused:
            np.testing.assert_allclose(fused[key], alone[key], atol=2e-5, rtol=1e-4, err_msg=f"{name}: {key}")


@pytest.mark.parametrize("overrides, message", [
    (["cv.folds=40"], "cv.folds=40 but class"),
    (["search.params={}"], "empty search space"),
    (["search.params={model__units: [3]}"], "search.params.model__units: unknown parameter"),
])
def test_bad_search_input_exits_2_without_run_folder(tmp_path, capsys, overrides, message):
    config = write_config(tmp_path, search={"strategy": "grid", "params": {"batch_size": [16]}})
    args = ["--config", config, "--output-dir", tmp_path / "out", "--quiet"]
    for override in overrides:
        args += ["--set", override]
    assert run_main(main, args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_repeated_folds_compare_the_best_with_each_candidate(tmp_path):
    """cv.repeats: 2 folds x 3 repeats = 6 distinct splits per candidate (fused into one program);
    results.csv's comparison with the best is the corrected t-test of its fold columns (n_test /
    n_train = 1 for 2 folds), and the report says it in sentences."""
    from pipeline.review.significance import corrected_ttest

    config = write_config(tmp_path, cv={"folds": 2, "shuffle": True, "repeats": 3},
                          search={"strategy": "grid", "params": {"model__init_mode": ["zeros", "he_normal", "glorot_uniform"]}})
    assert run_main(main, ["--config", config, "--output-dir", tmp_path / "out", "--quiet"]) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    results = pd.read_csv(run_dir / "results.csv").set_index("candidate")
    folds = [f"fold{i}_test_score" for i in range(6)]
    assert list(results.columns[results.columns.str.match(r"fold\d+_test_score")]) == folds
    fits = pd.read_csv(run_dir / "fits.csv", dtype={"fold_key": str})
    assert fits["fold_key"].nunique() == 6 and sorted(fits["fold"].unique()) == list(range(6))
    best = results["rank"].idxmin()
    assert results.loc[best, ["diff_vs_best", "p_vs_best"]].isna().all()
    for candidate in results.index.drop(best):
        differences = results.loc[best, folds].to_numpy(float) - results.loc[candidate, folds].to_numpy(float)
        assert tuple(results.loc[candidate, ["diff_vs_best", "diff_vs_best_se", "p_vs_best"]]) == \
            pytest.approx(corrected_ttest(differences, test_train_ratio=1.0))
    zeros = results.index[results["model__init_mode"] == "zeros"][0]
    assert results.loc[zeros, "p_vs_best"] < 0.05  # zeros never learns: clearly worse on every split
    report = (run_dir / "report.md").read_text()
    assert "## Is the best really better?" in report and "6 splits (2 folds x 3 repeats)" in report
    best_mode = results.loc[best, "model__init_mode"]
    assert f"{best_mode} vs zeros: {results.loc[best, 'mean_test_score']:.4f} vs " in report
    assert "the best is better (p = " in report
    assert json.loads((run_dir / "run.json").read_text())["cv_repeats"] == 3
