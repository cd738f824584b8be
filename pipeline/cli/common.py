"""Command-line flags shared by `pipeline.search` and `pipeline.train`, as config overrides."""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

from ..core.errors import PipelineError


def command_parser(command: str, description: str) -> argparse.ArgumentParser:
    """The parser of `pipeline.<command>`, named in help and errors as the user called it
    (`pipeline-<command>`, the installed script, or `python -m pipeline.<command>`), with --version."""
    script = Path(sys.argv[0]).name
    prog = script if script == f"pipeline-{command}" else f"python -m pipeline.{command}"
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"pipeline {package_version()}")
    return parser


def package_version() -> str:
    """The installed package's version (from its metadata: pyproject.toml is the one place it is written)."""
    try:
        return metadata.version("pipeline")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """--set, --data and --output-dir: the config overrides both commands take."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set cv.folds=5 --set optimizer.learning_rate=0.05")
    parser.add_argument("--data", metavar="PATH", help="use a local .npz file or folder of IDX files")
    parser.add_argument("--output-dir", help="where run folders go (default: output_dir of the config)")


def cli_overrides(args: argparse.Namespace) -> list[str]:
    """The command-line flags as `--set`-style overrides, applied before validation."""
    overrides = list(args.overrides)
    if getattr(args, "epochs", None) is not None:  # pipeline.train only
        overrides.append(f"training.epochs={args.epochs}")
    if args.data:
        overrides += ["data.name=file", f"data.path={args.data}"]
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    if getattr(args, "backend", None):  # pipeline.search only
        overrides.append(f"execution.backend={args.backend}")
    if getattr(args, "scheduler", None):
        overrides += [f"execution.scheduler={args.scheduler}"] + ([] if args.backend else ["execution.backend=dask"])
    if getattr(args, "insecure", False):
        overrides.append("execution.insecure=true")
    for name in ("tls_ca", "tls_cert", "tls_key"):
        if getattr(args, name, None):
            overrides.append(f"execution.{name}={getattr(args, name)}")
    if getattr(args, "dashboard", False):
        overrides += ["execution.dashboard=true"] + ([] if args.backend else ["execution.backend=dask"])
    return overrides


def check_output_file(path: str | None, flag: str = "--out") -> None:
    """Refuse an output file that is a folder or lies in a missing folder, before any work is done."""
    if not path:
        return
    if Path(path).is_dir():
        raise PipelineError(f"{flag} {path} is a folder: give a file name, e.g. {Path(path) / 'predictions.csv'}")
    if not Path(path).resolve().parent.is_dir():
        raise PipelineError(f"{flag} {path}: folder {Path(path).parent} does not exist; create it first")
