"""`python -m pipeline.search`: config -> data -> search -> results -> best model, in a run folder.

This process holds the run's lock for the whole run. It trains in-process when the search is
small (or runs on Dask); otherwise it supervises a series of worker processes
(`pipeline.tuning.supervisor`) that continue from the fit journal. `--resume RUN` continues a
killed or interrupted run, and may change how it executes (`--backend`, `--scheduler`,
`--set execution.*`), never what it computes.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..core.errors import EXIT_FAILED, EXIT_INTERRUPTED, PipelineError, storage_problem
from ..core.files import run_lock
from ..data import Dataset, load_dataset
from ..spec.config import ExperimentConfig, load_config, loopback_or_tls
from .common import add_config_flags, cli_overrides, command_parser

DEFAULT_CONFIG = "configs/init_grid.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("search", __doc__.splitlines()[0])
    parser.add_argument("--config", help=f"YAML experiment (default: {DEFAULT_CONFIG}, the initializer grid)")
    add_config_flags(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the candidate and fit counts, then exit")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or interrupted run in its folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--backend", choices=["local", "dask"],
                        help="where fits train: this machine (default) or a Dask cluster (execution.backend)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="Dask scheduler, e.g. tls://host:8786 (implies --backend dask; without it a local cluster)")
    parser.add_argument("--tls-ca", "--tls-ca-file", dest="tls_ca", metavar="FILE",
                        help="a tls:// scheduler's CA certificate (execution.tls_ca; pipeline.cluster certs makes it)")
    parser.add_argument("--tls-cert", metavar="FILE", help="the certificate to present to it (execution.tls_cert)")
    parser.add_argument("--tls-key", metavar="FILE", help="that certificate's private key (execution.tls_key)")
    parser.add_argument("--insecure", action="store_true",
                        help="allow a plain tcp:// scheduler on a network address (execution.insecure; see README)")
    parser.add_argument("--dashboard", action="store_true",
                        help="serve the local Dask cluster's dashboard on 127.0.0.1 (implies --backend dask)")
    parser.add_argument("--worker", metavar="RUN_DIR", help=argparse.SUPPRESS)  # started by the supervisor
    parser.add_argument("--worker-fits", type=int, help=argparse.SUPPRESS)
    return parser


def _describe_plan(config, plan) -> str:
    """The dry run's count: candidates, rounds or rungs, splits, fits."""
    search, splits = config.search, config.cv.describe()
    budget = f"fewer if the {search.budget_minutes:g} CPU minutes run out" if search.budget_minutes else ""
    if search.pruning is not None:  # the counting search promoted every candidate: the most it can train
        rungs = search.pruning.rungs(config.training.epochs)
        return (f"{sum(plan.candidates) // len(rungs)} candidates x {splits}, pruned at epochs {rungs[:-1]} of "
                f"{rungs[-1]}: at most {plan.fits} fits with the refit{', ' + budget if budget else ''}")
    if search.pbt is not None:
        ends = search.pbt.ends(config.training.epochs)
        return (f"{search.pbt.population} population members x {len(ends)} intervals (scored at epochs {ends}) "
                f"x {splits} + 1 refit of the winner's schedule = {plan.fits} fits")
    halving = search.strategy.startswith("halving") and len(plan.candidates) > 1
    rounds = f" over {len(plan.candidates)} halving rounds {list(plan.candidates)}" if halving else ""
    return f"{sum(plan.candidates)} candidates{rounds} x {splits} + 1 refit = {plan.fits} fits" + \
        (f" ({budget})" if budget else "")


def main(argv: Sequence[str] | None = None) -> int:
    from ..tuning.lifecycle import finished, load_run_dataset, resume_run, start_run
    from ..tuning.strategies import count_fits

    args = build_parser().parse_args(argv)
    if args.worker:
        return _work(Path(args.worker), args.worker_fits)
    run_dir = Path(args.resume) if args.resume else None
    if run_dir is not None and not run_dir.is_dir():
        raise PipelineError(f"--resume {run_dir}: no such run folder; give outputs/<run> of an earlier search")
    if run_dir is not None and not args.config and not (run_dir / "config.yaml").is_file():
        raise PipelineError(f"--resume {run_dir}: config.yaml is missing; give a run folder written by pipeline.search")
    given = load_config(_config_path(args.config, run_dir), cli_overrides(args), search=True)
    if args.dry_run:
        config, dataset = load_run_dataset(run_dir) if run_dir else (given, load_dataset(given.data, given.seed))
        plan = count_fits(config, dataset)
        print(f"{config.experiment}: {config.search.strategy} search, {_describe_plan(config, plan)}")
        return 0
    if given.execution.insecure and given.execution.scheduler and not loopback_or_tls(given.execution.scheduler):
        print(f"WARNING: --insecure: plain tcp:// to {given.execution.scheduler}; anyone who can reach it can run "
              "code on its workers and on this machine (recorded in run.json's execution)", file=sys.stderr)
    wanted = not (run_dir and finished(run_dir))
    with _scheduler_client(given, wanted) as client, _early_workers(given, wanted) as workers:
        if run_dir is None:
            dataset = load_dataset(given.data, given.seed)
            run_dir = start_run(given, dataset)
        with run_lock(run_dir):
            if args.resume:
                done = finished(run_dir)
                config, dataset = resume_run(run_dir, given, record_execution=not done)
                if done:
                    _report_of_finished_run(run_dir)
                    return 0
            else:
                config = given
            execution = config.execution
            if execution.fits_per_process == 0 or execution.backend == "dask":  # in-process (Dask's workers train)
                return _run_here(config, dataset, run_dir, progress=not args.quiet, workers=workers.count,
                                 client=client)
            total = count_fits(config, dataset).fits - 1
            if total <= execution.fits_per_process:  # one worker's quota: spare a process start-up
                return _run_here(config, dataset, run_dir, progress=not args.quiet, workers=workers.count)
            from ..tuning.supervisor import supervise

            workers.close()  # this process supervises; its worker processes train
            return supervise(run_dir, total, execution.fits_per_process, progress=not args.quiet)


@contextmanager
def _scheduler_client(config: ExperimentConfig, wanted: bool) -> Iterator[Any]:
    """The Dask scheduler's client, connected and checked before the run folder exists (so a
    refusal leaves nothing half-made) and used for the whole search; None without `--scheduler`
    (a local cluster starts with the search, `pipeline.tuning.run.open_runner`) or if not `wanted`."""
    execution = config.execution
    if not (wanted and execution.backend == "dask" and execution.scheduler):
        yield None
        return
    from ..tuning.certificates import TlsFiles
    from ..tuning.cluster import dask_client

    with dask_client(execution.scheduler, cores=0, tls=TlsFiles.of(execution)) as client:
        yield client


def _early_workers(config: ExperimentConfig, wanted: bool = True):
    """A local fused search's worker processes, started now (see `EarlyWorkers`); none if not `wanted`."""
    from ..tuning.run import local_trainers
    from ..tuning.runners import EarlyWorkers

    execution = config.execution
    return EarlyWorkers(local_trainers(config), fuse=wanted and execution.backend != "dask" and execution.fuse
                        and execution.max_towers > 1)


def _work(run_dir: Path, worker_fits: int | None) -> int:
    """A worker process of the supervisor (which holds the lock): resume, train at most `worker_fits` new fits."""
    from ..tuning.lifecycle import resume_run
    from ..tuning.session import FitBudget, RecycleWorker
    from ..tuning.supervisor import EXIT_RECYCLE, exit_with_parent

    exit_with_parent()
    with _early_workers(load_config(run_dir / "config.yaml", search=True)) as workers:
        config, dataset = resume_run(run_dir)
        try:
            return _run_here(config, dataset, run_dir, progress=False,
                             budget=FitBudget(worker_fits, config.execution.max_memory_growth), workers=workers.count,
                             cpu_root=os.getppid())  # the supervisor: the CPU budget counts its whole tree
        except RecycleWorker:
            return EXIT_RECYCLE


def _run_here(config: ExperimentConfig, dataset: Dataset, run_dir: Path, progress: bool, budget=None,
              workers: int = 0, client=None, cpu_root: int | None = None) -> int:
    """Run the search in this process (and its `workers` started early, or on the Dask scheduler
    of `client`) and print the tutorial-style summary."""
    from ..tuning.lifecycle import mark_run
    from ..tuning.run import run_search
    from ..tuning.session import InfrastructureStop, SearchAborted

    resume = f"python -m pipeline.search --resume {run_dir}"
    try:
        outcome = run_search(config, dataset, run_dir, progress=progress, budget=budget, workers=workers,
                             client=client, cpu_root=cpu_root)
    except KeyboardInterrupt:
        mark_run(run_dir, "interrupted")
        print(f"\ninterrupted: finished fits are kept in {run_dir}/journal.jsonl; continue with\n  {resume}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except SearchAborted as error:
        mark_run(run_dir, "aborted", reason=str(error))
        print(f"error: search aborted: {error}; fix the config (or raise execution.max_consecutive_failures) "
              "and start a new run", file=sys.stderr)
        return EXIT_FAILED
    except InfrastructureStop as error:
        return _stopped(run_dir, f"{error}; fix the cause, then continue with: {resume}")
    except OSError as error:
        if storage_problem(error) is None:
            raise  # not a storage condition: a bug, to be seen in full
        return _stopped(run_dir, f"{storage_problem(error)}, then continue with: {resume}")
    except PipelineError as error:
        _try_mark(run_dir, "failed", str(error))
        raise
    print("\n".join(outcome["summary"]))
    failed = outcome["failed_candidates"]
    if failed:
        print(f"{len(failed)} failed candidate(s):")
        for candidate, reason in failed.items():
            print(f"  candidate {candidate}: {reason}")
    scores = ", ".join(f"{name} {value:.4f}" for name, value in outcome["test_scores"].items())
    print(f"test {scores} of the refitted best model ({dataset.name}, {len(dataset.y_test)} test samples)")
    print(f"run folder: {run_dir} (report: {run_dir}/report.html; "
          f"every fit in TensorBoard: tensorboard --logdir {run_dir}/tensorboard)")
    return 0


def _stopped(run_dir: Path, message: str) -> int:
    """A run stopped by its environment (disk, lost workers): recorded as interrupted, resumable."""
    _try_mark(run_dir, "interrupted", message)
    print(f"error: {message}", file=sys.stderr)
    return EXIT_FAILED


def _try_mark(run_dir: Path, status: str, reason: str) -> None:
    """Record how the run stopped, if the disk lets us (it may be the very problem)."""
    from ..tuning.lifecycle import mark_run

    try:
        mark_run(run_dir, status, reason=reason)
    except OSError:
        pass


def _config_path(given: str | None, run_dir: Path | None) -> Path:
    if given:
        return Path(given)
    if run_dir is not None:
        return run_dir / "config.yaml"
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / DEFAULT_CONFIG).is_file():
            return base / DEFAULT_CONFIG
    raise PipelineError(f"no --config given and {DEFAULT_CONFIG} not found here; pass --config FILE")


def _report_of_finished_run(run_dir: Path) -> None:
    """A finished run has nothing to train; its report is rebuilt if the run was killed while
    writing it (the run is marked finished just before, once every other file is written)."""
    rebuild = not all((run_dir / name).is_file() for name in ("report.md", "report.html"))
    if rebuild:
        from ..review.report import write_report

        write_report(run_dir)
    print(f"{run_dir} is already finished: nothing to train{'; rebuilt its report' if rebuild else ''} "
          f"(results: {run_dir}/report.html)")


if __name__ == "__main__":
    from ..core.errors import run_cli

    raise SystemExit(run_cli(main))
