"""Several runs side by side: a summary per run, and the leaderboards with one column per run and
one row per rank, each cell that rank's candidate ("name=value, ...") and its mean +- std CV score."""

from __future__ import annotations

import pandas as pd

from .report import RunFiles


def summary_table(runs: list[RunFiles]) -> pd.DataFrame:
    return pd.DataFrame([{
        "run": run.dir.name,
        "dataset": run.run.get("dataset", {}).get("name"),
        "strategy": run.config.get("search", {}).get("strategy"),
        "candidates": len(run.results),
        "best CV score": round(run.run.get("best_cv_score", float("nan")), 4),
        "test scores": ", ".join(f"{k} {v:.4f}" for k, v in run.run.get("test_scores", {}).items()),
        "wall time (s)": run.run.get("wall_time_s"),
    } for run in runs])


def compare_leaderboards(runs: list[RunFiles], top: int) -> pd.DataFrame:
    """rank + one column per run holding 'params: mean +- std' for that rank."""
    table = pd.DataFrame({"rank": range(1, top + 1)})
    names = _unique([run.dir.name for run in runs])
    for name, run in zip(names, runs):
        rows = run.results.sort_values(["rank", "candidate"]).head(top)
        cells = []
        for _, row in rows.iterrows():
            params = ", ".join(f"{p.split('__')[-1]}={row[p]}" for p in run.params)
            score = f"{row['mean_test_score']:.4f} +- {row['std_test_score']:.4f}" if pd.notna(row["mean_test_score"]) else "failed"
            cells.append(f"{params}: {score}")
        table[name] = cells + [""] * (top - len(cells))
    return table[table.drop(columns="rank").ne("").any(axis=1)]


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return unique

