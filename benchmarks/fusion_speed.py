"""Side-by-side benchmark of the fused engine on any config: `pipeline.search` with fusing on
(default) against the same search with `execution.fuse=false`, each in a fresh process,
alternating `--repeats` times on the shipped MNIST sample.

Prints median wall time, the ratio, CPU time, peak memory of the process tree, how many
candidates trained fused, and how far apart the two runs' mean CV scores are per candidate.

    python benchmarks/fusion_speed.py configs/random_sgd.yaml [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_speed import run_search_cli  # noqa: E402  (the sibling benchmark's measured runner)


def main() -> int:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sides = {"fused (default)": [], "execution.fuse: false": ["--set", "execution.fuse=false"]}
    measured: dict[str, list] = {name: [] for name in sides}
    results: dict[str, pd.DataFrame] = {}
    fused_counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as work:
        for round_number in range(args.repeats):
            for name, overrides in sides.items():
                run_dir, fits, figures = run_search_cli(Path(work), args.config, overrides)
                measured[name].append((fits, *figures))
                table = pd.read_csv(run_dir / "results.csv")
                results[name] = table.sort_values("candidate").reset_index(drop=True)
                fused_counts[name] = len(json.loads((run_dir / "run.json").read_text())["fused_candidates"])
                print(f"  round {round_number + 1}, {name}: {figures[0]:.1f} s wall, {figures[1]:.1f} s CPU", flush=True)
    reference = statistics.median(m[1] for m in measured["execution.fuse: false"])
    print(f"\n{args.config.name}, {args.repeats} alternating rounds, data.name=mnist-sample\n")
    print("| run | median wall (s) | speed-up | CPU (s) | peak memory, all processes (MB) | fits | fused candidates |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in measured.items():
        walls = [run[1] for run in runs]
        wall = statistics.median(walls)
        print(f"| {name} | {wall:.1f} ({', '.join(f'{w:.1f}' for w in walls)}) | {reference / wall:.2f}x | "
              f"{statistics.median(run[2] for run in runs):.1f} | {max(run[3] for run in runs):.0f} | {runs[0][0]} | "
              f"{fused_counts[name]} of {len(results[name])} |")
    fused, alone = results["fused (default)"], results["execution.fuse: false"]
    gap = (fused["mean_test_score"] - alone["mean_test_score"]).abs()
    same_best = fused.loc[fused["rank"] == 1, "candidate"].tolist() == \
        alone.loc[alone["rank"] == 1, "candidate"].tolist()
    print(f"\nmean CV score, fused vs alone, per candidate: largest difference {gap.max():.4f} "
          f"(median {gap.median():.4f}); same best candidate: {'yes' if same_best else 'no'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
