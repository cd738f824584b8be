"""Tidy results tables from a hand-written cv_results_."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.review.tables import best_params, best_row, cv_results_frame, param_columns, summary_lines, tidy_results

CV_RESULTS = {
    "params": [
        {"model__init_mode": "zeros", "model__hidden_layers": (64, 64)},
        {"model__init_mode": "he_uniform", "model__hidden_layers": (64, 64)},
        {"model__init_mode": "uniform", "model__hidden_layers": (32,)},
    ],
    "param_model__init_mode": ["zeros", "he_uniform", "uniform"],
    "mean_test_score": [0.11, 0.95, np.nan],
    "std_test_score": [0.01, 0.005, np.nan],
    "split0_test_score": [0.10, 0.945, np.nan],
    "split1_test_score": [0.12, 0.955, np.nan],
    "mean_train_score": [0.11, 0.99, np.nan],
    "mean_fit_time": [1.0, 2.0, 0.1],
    "mean_score_time": [0.1, 0.2, 0.0],
    "rank_test_score": [2, 1, 3],
}


def test_one_row_per_candidate_best_first_with_a_column_per_parameter():
    table = tidy_results(CV_RESULTS, errors={2: "ValueError: boom"})
    assert list(table["candidate"]) == [1, 0, 2]
    assert list(table["rank"]) == [1, 2, 3]
    assert list(table["model__init_mode"]) == ["he_uniform", "zeros", "uniform"]
    assert list(table["model__hidden_layers"]) == ["64-64", "64-64", "32"]
    assert list(table["fold1_test_score"])[:2] == [0.955, 0.12]
    assert table["train_test_gap"].iloc[0] == pytest.approx(0.04)
    assert list(table["error"]) == ["", "", "ValueError: boom"]
    assert param_columns(table) == ["model__hidden_layers", "model__init_mode"]


def test_failed_candidates_rank_last_and_are_never_best():
    table = tidy_results(CV_RESULTS)
    assert table.iloc[-1]["candidate"] == 2 and np.isnan(table.iloc[-1]["mean_test_score"])
    assert best_params(table, CV_RESULTS) == CV_RESULTS["params"][1]


def test_halving_best_comes_from_the_last_round():
    results = dict(CV_RESULTS, iter=[0, 0, 1], n_resources=[1, 1, 3],
                   mean_test_score=[0.11, 0.95, 0.90], std_test_score=[0.0, 0.0, 0.0],
                   split0_test_score=[0.1, 0.9, 0.9], split1_test_score=[0.1, 1.0, 0.9])
    table = tidy_results(results)
    assert int(best_row(table)["candidate"]) == 2
    assert "round 1, n_resources=3" in summary_lines(table, results)[3]


def test_summary_lines_are_tutorial_style():
    lines = summary_lines(tidy_results(CV_RESULTS, {2: "ValueError: boom"}), CV_RESULTS)
    assert lines[0] == f"Best: 0.9500 using {CV_RESULTS['params'][1]}"
    assert lines[1].startswith("mean=0.1100, std=0.0100 using {'model__init_mode': 'zeros'")
    assert lines[3].endswith("FAILED: ValueError: boom")


def test_all_failed_has_no_best():
    results = dict(CV_RESULTS, mean_test_score=[np.nan] * 3)
    with pytest.raises(ValueError, match="every candidate failed"):
        best_row(tidy_results(results))


def test_cv_results_frame_keeps_every_key():
    frame = cv_results_frame(CV_RESULTS)
    assert set(frame.columns) == set(CV_RESULTS) and len(frame) == 3
    assert frame["params"][0].startswith("{'model__init_mode': 'zeros'")
