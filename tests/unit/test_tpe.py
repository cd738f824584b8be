"""`search.strategy: tpe`: the config's space asked of Optuna, and the search loop's batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import write_config

optuna = pytest.importorskip("optuna")

from pipeline.core.errors import PipelineError  # noqa: E402
from pipeline.spec.config import load_config  # noqa: E402
from pipeline.tuning.tpe import TPESearchCV, suggest  # noqa: E402

SPACE = [
    {"optimizer": ["sgd"], "optimizer__learning_rate": {"distribution": "loguniform", "low": 0.001, "high": 0.1},
     "optimizer__momentum": {"distribution": "uniform", "low": 0.0, "high": 0.9},
     "model__hidden_layers": [[32], [64, 64]], "epochs": {"distribution": "randint", "low": 2, "high": 4}},
    {"optimizer": ["adam"], "optimizer__learning_rate": {"distribution": "loguniform", "low": 0.0001, "high": 0.01},
     "batch_size": {"distribution": "choice", "values": [32, 64]}},
]


def test_the_space_becomes_optunas_distributions():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    asked = []
    for _ in range(60):
        trial = study.ask()
        asked.append((suggest(trial, SPACE), trial.distributions))
        study.tell(trial, 0.0)
    sgd = [(p, d) for p, d in asked if p["optimizer"] == "sgd"]
    adam = [(p, d) for p, d in asked if p["optimizer"] == "adam"]
    assert sgd and adam
    for params, distributions in sgd:
        assert set(params) == set(SPACE[0])
        assert 0.001 <= params["optimizer__learning_rate"] <= 0.1 and distributions["0:optimizer__learning_rate"].log
        assert 0.0 <= params["optimizer__momentum"] <= 0.9
        assert params["model__hidden_layers"] in [(32,), (64, 64)]  # widths by position: Optuna takes plain values
        assert params["epochs"] in (2, 3, 4) and isinstance(params["epochs"], int)
    assert {p["epochs"] for p, _ in sgd} == {2, 3, 4}  # randint bounds are inclusive
    for params, distributions in adam:
        assert set(params) == set(SPACE[1]) and params["batch_size"] in (32, 64)
        assert 0.0001 <= params["optimizer__learning_rate"] <= 0.01 and "1:optimizer__learning_rate" in distributions


class _Quadratic:
    """Stands for a search's `evaluate_candidates`: scores peak at learning rate 0.01."""

    def __init__(self):
        self.calls, self.scores = [], []

    def __call__(self, candidates):
        self.calls.append(len(candidates))
        self.scores += [-(math.log10(c["optimizer__learning_rate"]) + 2) ** 2 for c in candidates]
        return {"mean_test_score": np.array(self.scores)}


def test_trials_are_asked_in_batches_and_the_sampler_learns():
    grids = [{"optimizer__learning_rate": {"distribution": "loguniform", "low": 1e-5, "high": 1.0}}]
    evaluate = _Quadratic()
    TPESearchCV(None, grids, n_trials=40, batch=8, random_state=0)._run_search(evaluate)
    assert evaluate.calls == [8] * 5
    first, last = np.array(evaluate.scores[:8]), np.array(evaluate.scores[-8:])
    assert np.median(last) > np.median(first)  # TPE moves towards the peak once it has scores
    again = _Quadratic()
    TPESearchCV(None, grids, n_trials=40, batch=8, random_state=0)._run_search(again)
    assert again.scores == evaluate.scores  # seeded: the same trials, which resume relies on


def test_tpe_takes_distributions_and_counts_its_trials(tmp_path):
    from pipeline.spec.space import first_round_candidates

    config = load_config(write_config(tmp_path, search={"strategy": "tpe", "n_trials": 7, "params": {
        "optimizer__learning_rate": {"distribution": "loguniform", "low": 0.001, "high": 0.1}}}), search=True)
    assert first_round_candidates(config) == 7
    with pytest.raises(PipelineError, match="distributions need strategy random, halving-random, tpe or pbt"):
        load_config(write_config(tmp_path, search={"strategy": "grid", "params": {
            "optimizer__learning_rate": {"distribution": "uniform", "low": 0.001, "high": 0.1}}}), search=True)


def test_failed_candidates_are_failed_trials():
    """A failed candidate scores NaN (error_score): told as a failed trial, the search goes on."""
    grids = [{"optimizer__learning_rate": {"distribution": "loguniform", "low": 1e-5, "high": 1.0}}]
    scores: list[float] = []

    def evaluate(candidates):
        scores.extend(math.nan if c["optimizer__learning_rate"] > 0.01 else 1.0 for c in candidates)
        return {"mean_test_score": np.array(scores)}

    TPESearchCV(None, grids, n_trials=12, batch=4, random_state=1)._run_search(evaluate)
    assert len(scores) == 12 and any(math.isnan(s) for s in scores)
