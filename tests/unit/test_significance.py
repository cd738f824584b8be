"""The best candidate against the others: Nadeau and Bengio's corrected resampled t-test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.review.significance import compare_with_best, comparison_sentences, corrected_ttest


def test_the_corrected_ttest_by_hand():
    # d = [0.01, 0.02, 0.03]: mean 0.02, var 1e-4, se = sqrt(1e-4 * (1/3 + 1/2)), df 2, where the
    # t distribution's tail has a closed form: P(T > t) = 1/2 - t / (2 sqrt(t^2 + 2)).
    mean, se, p = corrected_ttest(np.array([0.01, 0.02, 0.03]), test_train_ratio=0.5)
    t = 0.02 / math.sqrt(1e-4 * (1 / 3 + 1 / 2))
    assert mean == pytest.approx(0.02) and se == pytest.approx(math.sqrt(1e-4 * 5 / 6))
    assert p == pytest.approx(0.5 - t / (2 * math.sqrt(t * t + 2)), rel=1e-9)
    assert p == pytest.approx(0.0799, abs=1e-4)


def test_without_the_correction_it_is_the_paired_ttest():
    rng = np.random.default_rng(0)
    best, other = rng.normal(0.93, 0.01, 10), rng.normal(0.92, 0.01, 10)
    plain = stats.ttest_rel(best, other, alternative="greater").pvalue
    assert corrected_ttest(best - other, test_train_ratio=0.0)[2] == pytest.approx(plain, rel=1e-9)
    corrected = corrected_ttest(best - other, test_train_ratio=1 / 4)[2]  # 5-fold: n_test / n_train = 1/4
    assert corrected > plain  # overlapping training sets: less confident


def test_equal_differences_have_no_variance():
    assert corrected_ttest(np.zeros(3), 0.5) == (0.0, 0.0, 1.0)
    assert corrected_ttest(np.full(3, 0.01), 0.5)[1:] == (0.0, 0.0)


def _results(**extra) -> pd.DataFrame:
    frame = pd.DataFrame({
        "rank": [1, 2, 3, 4], "candidate": [2, 0, 3, 1],
        "model__init_mode": ["he_normal", "glorot_normal", "zeros", "uniform"],
        "mean_test_score": [0.93, 0.92, np.nan, 0.90],
        "fold0_test_score": [0.92, 0.915, np.nan, 0.90], "fold1_test_score": [0.93, 0.92, np.nan, 0.89],
        "fold2_test_score": [0.94, 0.925, np.nan, 0.91], "error": ["", "", "diverged", ""], **extra,
    })
    return frame


def test_compare_with_best_fills_each_scored_candidate_but_the_best():
    compared = compare_with_best(_results(), test_train_ratio=0.5).set_index("candidate")
    assert compared.loc[[2, 3], ["diff_vs_best", "diff_vs_best_se", "p_vs_best"]].isna().all().all()  # best, failed
    expected = corrected_ttest(np.array([0.005, 0.01, 0.015]), 0.5)
    assert tuple(compared.loc[0, ["diff_vs_best", "diff_vs_best_se", "p_vs_best"]]) == pytest.approx(expected)
    assert compared.loc[1, "diff_vs_best"] == pytest.approx(0.03)


def test_halving_compares_only_the_last_round():
    compared = compare_with_best(_results(iter=[1, 1, 0, 0]), test_train_ratio=0.5).set_index("candidate")
    assert compared.loc[0, "p_vs_best"] > 0 and compared.loc[[1, 2, 3], "p_vs_best"].isna().all()


def test_the_sentences_say_what_the_numbers_say():
    compared = compare_with_best(_results(), test_train_ratio=0.5)
    sentences = comparison_sentences(compared, limit=10)
    p0, p1 = compared.set_index("candidate").loc[[0, 1], "p_vs_best"]
    assert sentences == [
        f"he_normal vs glorot_normal: 0.9300 vs 0.9200, difference 0.0100 ± "
        f"{compared.set_index('candidate').loc[0, 'diff_vs_best_se']:.4f}, p = {p0:.2g}: not distinguishable "
        "at these splits",
        f"he_normal vs uniform: 0.9300 vs 0.9000, difference 0.0300 ± 0.0091, the best is better (p = {p1:.2g} < 0.05)",
    ]
    assert p0 >= 0.05 and p1 < 0.05
    assert comparison_sentences(compared, limit=1) == sentences[:1]
    assert comparison_sentences(compare_with_best(_results().iloc[:1], 0.5), 10) == []  # nothing to compare


def test_with_several_parameters_the_sentence_names_what_differs():
    results = _results(optimizer__learning_rate=[0.0014249, 0.0016654, np.nan, 0.0014249],
                       optimizer__rho=[0.9198, np.nan, np.nan, 0.9198])
    sentences = comparison_sentences(compare_with_best(results, 0.5), limit=10)
    assert sentences[0].startswith("candidate 2 vs candidate 0 (init_mode=glorot_normal, learning_rate=0.001665, "
                                   "rho=-): 0.9300 vs 0.9200, difference 0.0100 ± ")
    assert sentences[1].startswith("candidate 2 vs candidate 1 (init_mode=uniform): 0.9300 vs 0.9000")
