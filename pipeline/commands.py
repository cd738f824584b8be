"""The installed commands (`[project.scripts]` in pyproject.toml): `pipeline-search` runs what
`python -m pipeline.search` runs, with the same one-line errors and exit codes. Each command's
module is imported only when it runs, so one command never loads another's dependencies."""

from __future__ import annotations

from importlib import import_module

from .core.errors import run_cli


def _run(command: str) -> int:
    return run_cli(import_module(f"pipeline.cli.{command}").main)


def search() -> int:
    return _run("search")


def train() -> int:
    return _run("train")


def predict() -> int:
    return _run("predict")


def report() -> int:
    return _run("report")


def compare() -> int:
    return _run("compare")


def baselines() -> int:
    return _run("baselines")


def cluster() -> int:
    return _run("cluster")
