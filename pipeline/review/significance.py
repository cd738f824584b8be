"""Is the winner really better? The best candidate against each other one, split by split.

The k folds of a cross-validation (x repeats) give each candidate k scores on the same splits, so
the best and another candidate can be compared by their paired differences. A plain t-test on
them is too confident: the splits' training sets overlap, so the differences are correlated.
Nadeau and Bengio's corrected resampled t-test (Machine Learning 52, 2003) inflates the
variance of the mean difference by n_test / n_train to account for it:

    se = sqrt(var(d, ddof=1) * (1 / n + n_test / n_train)),  t = mean(d) / se,  df = n - 1

as in scikit-learn's example "Statistical comparison of models using grid search". The test is
one-sided (is the best's score higher?), since the best was chosen for being highest. With 3
folds it rarely tells candidates apart; `cv.repeats` adds splits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .tables import COMPARISON_COLUMNS as COLUMNS
from .tables import best_row, param_columns

LEVEL = 0.05  # the p-value below which a sentence says "the best is better"


def split_scores(results: pd.DataFrame) -> pd.DataFrame:
    """The per-split test scores (fold0_test_score, fold1_test_score, ...), in split order."""
    columns = sorted((c for c in results.columns if c.startswith("fold") and c.endswith("_test_score")),
                     key=lambda c: int(c[len("fold"):-len("_test_score")]))
    return results[columns]


def corrected_ttest(differences: np.ndarray, test_train_ratio: float) -> tuple[float, float, float]:
    """(mean difference, its corrected standard error, one-sided p-value that the mean is > 0).
    Differences that are all equal have no variance: p is 1 if they are all zero, else 0."""
    n = len(differences)
    mean = float(np.mean(differences))
    se = float(np.sqrt(np.var(differences, ddof=1) * (1 / n + test_train_ratio)))
    if se == 0:
        return mean, 0.0, 1.0 if mean == 0 else 0.0
    return mean, se, float(stats.t.sf(mean / se, df=n - 1))


def compare_with_best(results: pd.DataFrame, test_train_ratio: float) -> pd.DataFrame:
    """`results` with the columns diff_vs_best (best's mean score minus this one's, over the
    splits), diff_vs_best_se and p_vs_best (see the module's docstring). Empty for the best
    itself, failed candidates, candidates with fewer than two splits, and (successive halving)
    candidates of earlier rounds, which were scored with fewer resources."""
    results = results.copy()
    for column in COLUMNS:
        results[column] = np.nan
    scored = results.dropna(subset=["mean_test_score"])
    scores = split_scores(results)
    if scored.empty or scores.shape[1] < 2:
        return results
    best = best_row(results)
    pool = scored if "iter" not in results else scored[scored["iter"] == best["iter"]]
    best_scores = scores.loc[best.name].to_numpy(float)
    for index in pool.index.drop(best.name):
        differences = best_scores - scores.loc[index].to_numpy(float)
        if np.isnan(differences).any():
            continue
        results.loc[index, list(COLUMNS)] = corrected_ttest(differences, test_train_ratio)
    return results


def comparison_sentences(results: pd.DataFrame, limit: int) -> list[str]:
    """One plain sentence per compared candidate (best ranked first, at most `limit`), e.g.
    "he_normal vs glorot_normal: 0.9336 vs 0.9294, difference 0.0043 ± 0.0004, the best is better
    (p = 0.0043 < 0.05)". With several searched parameters the candidates are named by number,
    and the other's parameters that differ from the best's are listed."""
    if "p_vs_best" not in results or results["p_vs_best"].isna().all():
        return []
    best = best_row(results)
    names = [p for p in param_columns(results) if results[p].nunique(dropna=False) > 1]

    def labels(row: pd.Series) -> str:
        if len(names) == 1:
            return f"{_value(best[names[0]])} vs {_value(row[names[0]])}"
        differing = [f"{p.split('__')[-1]}={_value(row[p])}" for p in names if _value(row[p]) != _value(best[p])]
        return f"candidate {int(best['candidate'])} vs candidate {int(row['candidate'])} ({', '.join(differing)})"

    compared = results.dropna(subset=["p_vs_best"]).sort_values(["rank", "candidate"]).head(limit)
    sentences = []
    for _, row in compared.iterrows():
        p = row["p_vs_best"]
        verdict = (f"the best is better (p = {p:.2g} < {LEVEL})" if p < LEVEL
                   else f"p = {p:.2g}: not distinguishable at these splits")
        sentences.append(f"{labels(row)}: {best['mean_test_score']:.4f} vs {row['mean_test_score']:.4f}, "
                         f"difference {row['diff_vs_best']:.4f} ± {row['diff_vs_best_se']:.4f}, {verdict}")
    return sentences


def _value(value) -> str:
    """A parameter value as a reader wants it: 4 significant digits, "-" where it does not apply."""
    if pd.isna(value):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
