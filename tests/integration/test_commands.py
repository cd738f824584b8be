"""The installed commands (`pipeline-search`, ...): each runs its `python -m pipeline.<command>`
module, names itself in help and errors as the user called it, and reports the package version."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from conftest import PROJECT

SCRIPTS = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["scripts"]
BIN = Path(sys.executable).parent


def _run(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120, cwd=PROJECT)


def test_every_command_module_has_an_installed_script():
    modules = {path.stem for path in (PROJECT / "pipeline" / "cli").glob("*.py")} - {"__init__", "common"}
    assert set(SCRIPTS) == {f"pipeline-{module}" for module in modules}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_reports_version_and_its_own_name(script):
    path = BIN / script
    assert path.exists(), f"{path} missing: install the project (pip install -e .) in this environment"
    version = _run(path, "--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"pipeline {metadata.version('pipeline')}"
    assert _run(path, "--help").stdout.startswith(f"usage: {script} ")
    module = script.replace("pipeline-", "pipeline.")
    assert _run(sys.executable, "-m", module, "--help").stdout.startswith(f"usage: python -m {module} ")


def test_script_errors_are_one_line_with_exit_code_2(tmp_path):
    result = _run(BIN / "pipeline-search", "--config", tmp_path / "missing.yaml")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: config file {tmp_path / 'missing.yaml'} not found: pass an existing YAML file with --config"]
    usage = _run(BIN / "pipeline-predict")
    assert usage.returncode == 2 and "pipeline-predict: error: the following arguments are required" in usage.stderr


def test_report_script_rebuilds_a_run_report(tiny_search_run, tmp_path):
    run_dir = shutil.copytree(tiny_search_run, tmp_path / "run")
    (run_dir / "report.md").unlink()
    result = _run(BIN / "pipeline-report", run_dir)
    assert result.returncode == 0, result.stderr
    report = (run_dir / "report.md").read_text()
    assert report.startswith("# Search report: tiny") and "## Leaderboard (top 4 of 4)" in report
