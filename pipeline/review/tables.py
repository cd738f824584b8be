"""`cv_results_` -> tidy pandas tables, the best candidate, and the tutorial-style summary.

Free of TensorFlow: these functions work on the plain dict scikit-learn returns (or on the
CSVs written from it), so they can be tested with a hand-written `cv_results_`.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

_SPLIT_SCORE = re.compile(r"split(\d+)_test_score")


# The best candidate against each (pipeline.review.significance), added to results.csv after these.
COMPARISON_COLUMNS = ("diff_vs_best", "diff_vs_best_se", "p_vs_best")


def cv_results_frame(cv_results: Mapping[str, Any]) -> pd.DataFrame:
    """scikit-learn's full `cv_results_` as a DataFrame (the `params` dicts as JSON-like text)."""
    frame = pd.DataFrame({key: list(values) for key, values in cv_results.items()})
    if "params" in frame:
        frame["params"] = frame["params"].map(lambda p: repr(dict(p)))
    return frame


def primary_view(cv_results: Mapping[str, Any], primary: str) -> dict[str, Any]:
    """Multi-metric `cv_results_` with the `primary` metric's keys renamed to the single-metric
    names (`mean_test_score`, `split0_test_score`, ...); other metrics keep their names."""
    renamed = {}
    for key, values in cv_results.items():
        for part in ("test", "train"):
            suffix = f"_{part}_{primary}"
            if key.endswith(suffix):
                key = key[: -len(suffix)] + f"_{part}_score"
        renamed[key] = values
    return renamed


def tidy_results(
    cv_results: Mapping[str, Any],
    errors: Mapping[int, str] | None = None,
    fit_times: Mapping[int, float] | None = None,
    extra_metrics: Sequence[str] = (),
    fused: Mapping[int, int] | None = None,
) -> pd.DataFrame:
    """One row per candidate, best first: rank, one column per hyperparameter, scores, times, error.

    `errors` maps a row index of `cv_results` to the reason its fits failed; such rows have
    NaN scores and rank last. `fit_times` (from the journal) replaces the measured mean fit
    time, which is near zero for fits replayed on resume. `extra_metrics` (of a multi-metric
    search, after `primary_view`) get their mean and std test scores as columns too. `fused`
    gives the number of towers a candidate's fits were trained with (column `fused_towers`, 0 = alone).
    """
    errors, fit_times = errors or {}, fit_times or {}
    params = list(cv_results["params"])
    names = sorted({name for candidate in params for name in candidate})
    n = len(params)
    frame = pd.DataFrame({"candidate": range(n)})
    for extra in ("iter", "n_resources"):
        if extra in cv_results:
            frame[extra] = np.asarray(cv_results[extra])
    for name in names:
        frame[name] = [_cell(candidate.get(name)) for candidate in params]
    frame["mean_test_score"] = np.asarray(cv_results["mean_test_score"], dtype=float)
    frame["std_test_score"] = np.asarray(cv_results["std_test_score"], dtype=float)
    splits = sorted((int(m.group(1)), key) for key in cv_results if (m := _SPLIT_SCORE.fullmatch(key)))
    for index, key in splits:
        frame[f"fold{index}_test_score"] = np.asarray(cv_results[key], dtype=float)
    for metric in extra_metrics:
        for stat in ("mean", "std"):
            frame[f"{stat}_test_{metric}"] = np.asarray(cv_results[f"{stat}_test_{metric}"], dtype=float)
    if "mean_train_score" in cv_results:
        frame["mean_train_score"] = np.asarray(cv_results["mean_train_score"], dtype=float)
        frame["train_test_gap"] = frame["mean_train_score"] - frame["mean_test_score"]
    frame["mean_fit_time"] = [fit_times.get(i, t) for i, t in enumerate(np.asarray(cv_results["mean_fit_time"], float))]
    frame["mean_score_time"] = np.asarray(cv_results["mean_score_time"], dtype=float)
    if fused is not None:
        frame["fused_towers"] = [int(fused.get(i, 0)) for i in range(n)]
    frame["error"] = [errors.get(i, "") for i in range(n)]
    frame.insert(0, "rank", _rank(frame))
    return frame.sort_values(["rank", "candidate"], kind="stable").reset_index(drop=True)


def param_columns(results: pd.DataFrame) -> list[str]:
    """The hyperparameter columns of a tidy results table."""
    fixed = {"rank", "candidate", "iter", "n_resources", "error", "train_test_gap", "fused_towers", *COMPARISON_COLUMNS}
    return [c for c in results.columns
            if c not in fixed and not c.endswith(("_score", "_time")) and not c.startswith(("mean_", "std_", "fold"))]


def last_round(results: pd.DataFrame) -> pd.DataFrame:
    """The rows the best is chosen from: all, or those of the last round (halving), rung
    (pruning) or interval (pbt)."""
    return results[results["iter"] == results["iter"].max()] if "iter" in results else results


def best_row(results: pd.DataFrame) -> pd.Series:
    """The best candidate; for successive halving, among those that reached the last round."""
    scored = last_round(results).dropna(subset=["mean_test_score"])
    if scored.empty:
        raise ValueError("every candidate failed; see the error column of results.csv")
    return scored.sort_values("mean_test_score", ascending=False, kind="stable").iloc[0]


def best_params(results: pd.DataFrame, cv_results: Mapping[str, Any]) -> dict[str, Any]:
    """The original (untouched) parameter dict of the best candidate."""
    return dict(cv_results["params"][int(best_row(results)["candidate"])])


def summary_lines(results: pd.DataFrame, cv_results: Mapping[str, Any]) -> list[str]:
    """The seed tutorial's printout: `Best: ... using {...}` then one line per candidate."""
    best = best_row(results)
    lines = [f"Best: {best['mean_test_score']:.4f} using {cv_results['params'][int(best['candidate'])]}"]
    for _, row in results.sort_values("candidate").iterrows():
        params = cv_results["params"][int(row["candidate"])]
        where = f" (round {int(row['iter'])}, n_resources={row['n_resources']})" if "iter" in row else ""
        failed = f"  FAILED: {row['error']}" if row["error"] else ""
        lines.append(f"mean={row['mean_test_score']:.4f}, std={row['std_test_score']:.4f} using {params}{where}{failed}")
    return lines


def _rank(frame: pd.DataFrame) -> np.ndarray:
    """1 = best mean score; failed (NaN) candidates share the last rank."""
    scores = frame["mean_test_score"]
    ranks = scores.rank(method="min", ascending=False)
    return ranks.fillna(scores.notna().sum() + 1).astype(int).to_numpy()


def _cell(value: Any) -> Any:
    """Lists and tuples (e.g. hidden_layers) as compact text, so each cell stays one value."""
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def pruning_summary(results: pd.DataFrame, rungs: Sequence[int]) -> dict[str, Any]:
    """How far the candidates of a pruned search got: how many reached each rung, and the epochs
    trained per fold (a survivor continues from its rung, so it trains the last rung's epochs)
    against every candidate training them all."""
    reached = [int((results["iter"] == rung).sum()) for rung in range(len(rungs))]
    steps = [later - earlier for earlier, later in zip([0, *rungs], rungs)]
    return {"rungs": list(rungs), "reached": reached,
            "candidate_epochs": int(sum(n * step for n, step in zip(reached, steps))),
            "without_pruning": reached[0] * rungs[-1]}


def pruning_sentence(summary: Mapping[str, Any]) -> str:
    """`pruning_summary` in words, for the report."""
    rungs, reached = summary["rungs"], summary["reached"]
    pruned = [f"{before - after} after {rung} epoch{'s' * (rung != 1)}"
              for rung, before, after in zip(rungs, reached, reached[1:]) if before > after]
    ratio = summary["without_pruning"] / max(summary["candidate_epochs"], 1)
    return (f"Pruning (search.pruning; rungs at epochs {', '.join(map(str, rungs[:-1]))} of {rungs[-1]}): "
            f"{reached[0]} candidates started; pruned: {', '.join(pruned) or 'none'}; {reached[-1]} trained all "
            f"{rungs[-1]} epochs. {summary['candidate_epochs']} candidate-epochs per fold instead of "
            f"{summary['without_pruning']} without pruning ({ratio:.1f}x fewer).")


def population_sentence(summary: Mapping[str, Any]) -> str:
    """run.json's `pbt` in words, for the report."""
    taken = sum(1 for member in summary["members"] for step in member["steps"] if step["from"] is not None)
    ends = sorted({step["epochs"] for member in summary["members"] for step in member["steps"]})
    return (f"Population-based training (search.pbt): {summary['population']} members, scored at epochs "
            f"{', '.join(map(str, ends))}; after each interval the bottom {summary['fraction']:.0%} took over the "
            f"weights and optimizer state of a top member and perturbed its {', '.join(summary['perturbed'])}: "
            f"{taken} take-over{'s' * (taken != 1)} in all. The winner ended as {summary['winner']}; the saved "
            "model is its schedule (below) trained again on the whole training split from the start, since each "
            "member's towers were trained on one fold's training rows.")


def population_tables(summary: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The winner's schedule (the perturbed values per interval) and every member's mean CV score
    per interval, "<- mN" where it took over member N before that interval."""
    schedule = pd.DataFrame([{name: f"{value:.4g}" if isinstance(value, float) else _cell(value)
                              for name, value in entry.items()} for entry in summary["schedule"]])
    schedule = schedule.rename(columns={"epochs": "until epoch"})
    rows = []
    for member in summary["members"]:
        row = {"member": member["member"], "ended as": member["ended_as"]}
        for step in member["steps"]:
            took = f" <- m{step['from']}" if step["from"] is not None else ""
            row[f"epoch {step['epochs']}"] = ("failed" if not math.isfinite(step["score"])
                                              else f"{step['score']:.4f}") + took
        rows.append(row)
    return schedule, pd.DataFrame(rows)
