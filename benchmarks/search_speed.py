"""Side-by-side benchmark: a plain scikeras + scikit-learn search vs `python -m pipeline.search`,
the same candidates.

For each config (default: init_grid, batch_epochs_init, random_sgd, halving), both searches run
on the same data (the shipped MNIST sample), folds, seed, epochs, batch sizes, validation split
and model, each in a fresh process (imports and start-up included, as a user sees them),
alternating `--repeats` times; the plain side is `benchmarks/plain_search.py`. Prints per
config the median wall time, the ratio, CPU time, peak memory of the process tree, fits, and
every candidate's mean CV accuracy on both sides (halving: in the last round it reached).
Optional rows:

  --memory    peak memory of a 100-fit search with the default settings
  --no-fuse   also time the pipeline with fusing off (execution.fuse=false)

    python benchmarks/search_speed.py [--configs init_grid random_sgd] [--repeats 3] [--memory] [--no-fuse]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
GRID = ROOT / "configs" / "init_grid.yaml"
# The default grid on the shipped MNIST sample (what `mnist` falls back to offline), as the baseline sees it.
SAME_DATA = ["--set", "data.name=mnist-sample"]


@dataclass
class Measurement:
    name: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)
    fits: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    best: str = ""

    def median_wall(self) -> float:
        return statistics.median(self.wall)


def run_measured(command: list[str]) -> tuple[float, float, float, float]:
    """Run `command` to completion: (wall seconds, CPU seconds of it and its children, peak memory
    of its process tree in MB (summed PSS, sampled every 0.2 s), peak RSS of its largest process in MB)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0.0]
    done = threading.Event()

    def sample():
        while not done.wait(0.2):
            peak[0] = max(peak[0], _tree_memory_mb(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    done.set()
    sampler.join()
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {code}):\n{stderr[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, peak[0], usage.ru_maxrss / 1024


def _tree_memory_mb(root: int) -> float:
    """Memory of `root` and all its descendants in MB: the sum of their proportional set sizes
    (psutil's `memory_full_info().pss`), so pages the processes share (TensorFlow's libraries,
    memory-mapped data) count once, not once per process as summed RSS would."""
    import psutil

    try:
        processes = [psutil.Process(root)]
        processes += processes[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            total += process.memory_full_info().pss / 2**20
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def run_baseline(measurement: Measurement, work: Path, config: Path) -> None:
    scores_path = work / "plain_scores.json"
    wall, cpu, peak, _ = run_measured([sys.executable, "benchmarks/plain_search.py", str(config), str(scores_path),
                                       *SAME_DATA])
    found = json.loads(scores_path.read_text())
    _record(measurement, wall, cpu, peak, found["fits"], found["mean_test_score"], found["best"])


def run_search_cli(work: Path, config: Path, overrides: list[str]) -> tuple[Path, int, tuple[float, float, float, float]]:
    """`python -m pipeline.search` on the baseline's data: (run folder, fits, `run_measured` figures)."""
    out = Path(tempfile.mkdtemp(dir=work))
    command = [sys.executable, "-m", "pipeline.search", "--config", str(config), "--quiet",
               "--output-dir", str(out), *SAME_DATA, *overrides]
    measured = run_measured(command)
    run_dir = next(out.iterdir())
    fits = sum(1 for _ in open(run_dir / "journal.jsonl")) + 1  # the journal's fits and the refit
    return run_dir, fits, measured


def run_pipeline(measurement: Measurement, work: Path, config: Path, overrides: list[str]) -> None:
    import pandas as pd

    from plain_search import candidate_id

    run_dir, fits, (wall, cpu, peak, _) = run_search_cli(work, config, overrides)
    results = pd.read_csv(run_dir / "results.csv", keep_default_na=False)
    run = json.loads((run_dir / "run.json").read_text())
    names = [name for name in results.columns if name in searched_names(config)]
    if "iter" in results:  # halving: each candidate's score in the last round it reached
        results = results.sort_values("iter").groupby(names, as_index=False).last()
    scores = {candidate_id(dict(zip(names, row[:-1]))): float(row[-1])
              for row in results[names + ["mean_test_score"]].itertuples(index=False)}
    best = candidate_id({name: value for name, value in run["best_params"].items() if name in names})
    _record(measurement, wall, cpu, peak, fits, scores, best)


def searched_names(config: Path) -> set[str]:
    from pipeline.spec.config import load_config

    return {name for grid in load_config(config, SAME_DATA[1:], search=True).search.grids() for name in grid}


def _record(measurement: Measurement, wall, cpu, peak, fits, scores, best) -> None:
    measurement.wall.append(wall)
    measurement.cpu.append(cpu)
    measurement.peak_mb.append(peak)
    measurement.fits, measurement.scores, measurement.best = fits, scores, best
    print(f"  {measurement.name}: {wall:.1f} s wall, {cpu:.1f} s CPU, {peak:.0f} MB peak, best {best}", flush=True)


def print_table(config: str, rows: list[Measurement], reference: Measurement) -> None:
    print(f"\n{config}\n\n| run | median wall (s) | vs {reference.name} | CPU (s) | peak memory, all processes (MB) | "
          "fits | fits/min |\n|---|---|---|---|---|---|---|")
    for row in rows:
        wall = row.median_wall()
        print(f"| {row.name} | {wall:.1f} ({', '.join(f'{w:.1f}' for w in row.wall)}) | "
              f"{reference.median_wall() / wall:.2f}x | {statistics.median(row.cpu):.1f} | {max(row.peak_mb):.0f} | "
              f"{row.fits} | {row.fits / wall * 60:.1f} |")
    print(f"\n| candidate | {' | '.join(row.name for row in rows)} | largest difference |\n|---|" + "---|" * (len(rows) + 1))
    for name in reference.scores:
        values = [row.scores.get(name, float("nan")) for row in rows]
        print(f"| `{name}` | {' | '.join(f'{v:.4f}' for v in values)} | "
              f"{max(abs(v - reference.scores[name]) for v in values):.4f} |")
    missing = [row.name for row in rows if set(row.scores) != set(reference.scores)]
    print(f"\nsame candidates on every side: {'no: ' + ', '.join(missing) if missing else 'yes'}; best: "
          + "; ".join(f"{row.name} `{row.best}`" for row in rows))


def memory_row(work: Path) -> None:
    """A 100-fit search with the default settings: 33 candidates x 3 folds + refit."""
    space = ("[{model__init_mode: [uniform, lecun_uniform, normal, zeros, glorot_normal, glorot_uniform, he_normal, "
             "he_uniform], model__dropout: [0.0, 0.1, 0.2, 0.3]}, {model__l2: [0.001]}]")
    _, fits, (wall, _, peak, largest) = run_search_cli(work, GRID, ["--set", f"search.params={space}"])
    print("\n| memory run | fits | wall (s) | peak memory, all processes (MB) | largest process RSS (MB) | under 2 GB |\n"
          "|---|---|---|---|---|---|\n"
          f"| 100-fit search (default settings) | {fits} | {wall:.1f} | {peak:.0f} | {largest:.0f} | "
          f"{'yes' if peak < 2048 else 'NO'} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["init_grid", "batch_epochs_init", "random_sgd", "halving"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--no-fuse", action="store_true")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        for name in args.configs:
            config = ROOT / "configs" / f"{name}.yaml"
            plain, pipeline = Measurement("plain scikeras"), Measurement("pipeline.search")
            unfused = Measurement("pipeline.search fuse=false")
            rows = [plain, pipeline] + ([unfused] if args.no_fuse else [])
            for repeat in range(args.repeats):
                print(f"{name}: round {repeat + 1}/{args.repeats}", flush=True)
                run_baseline(plain, work, config)
                run_pipeline(pipeline, work, config, [])
                if args.no_fuse:
                    run_pipeline(unfused, work, config, ["--set", "execution.fuse=false"])
            print_table(name, rows, plain)
        if args.memory:
            memory_row(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
