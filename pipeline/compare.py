"""`python -m pipeline.compare RUN_DIR RUN_DIR ...`: several runs' leaderboards side by side.

One column per run, one row per rank: each cell is that rank's candidate ("name=value, ...")
and its mean +- std CV score. A summary table above it gives each run's dataset, best CV score
and test accuracy. `--out FILE.csv` writes the side-by-side table. Reads result files only.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import pandas as pd

from .errors import PipelineError, run_cli
from .report import RunFiles
from .runs import write_csv_atomic


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.compare", description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", help="search run folders, e.g. outputs/init_grid-*")
    parser.add_argument("--top", type=int, default=10, help="ranks to show (default 10)")
    parser.add_argument("--out", help="write the side-by-side leaderboard to this CSV file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.top <= 0:
        raise PipelineError(f"--top {args.top}: give a positive number of ranks")
    runs = [RunFiles(Path(path)) for path in args.run_dirs]
    print(summary_table(runs).to_string(index=False))
    print()
    side_by_side = compare_leaderboards(runs, args.top)
    print(side_by_side.to_string(index=False))
    if args.out:
        write_csv_atomic(side_by_side, args.out)
        print(f"\nwrote {args.out}")
    return 0


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


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
