"""The package's layers (pyproject.toml's import-linter contracts): a lower layer never imports a
higher one, config/review code never loads TensorFlow, scikeras stays behind one module."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT

LINT = """
import sys
from importlinter.cli import lint_imports
sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))
"""


def _lint(root: Path) -> subprocess.CompletedProcess:
    """import-linter on the package under `root` (a fresh interpreter: grimp reads `sys.path`)."""
    return subprocess.run([sys.executable, "-c", LINT, str(root / "pyproject.toml")], cwd=root,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)


def test_the_layer_contracts_hold():
    result = _lint(PROJECT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_a_lower_layer_importing_a_higher_one_is_caught(tmp_path):
    shutil.copytree(PROJECT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / "pyproject.toml", tmp_path)
    factory = tmp_path / "pipeline" / "training" / "factory.py"
    factory.write_text(factory.read_text() + "\nfrom ..tuning import records  # a violation\n")
    result = _lint(tmp_path)
    assert result.returncode == 1
    assert "pipeline.training.factory -> pipeline.tuning.records" in result.stdout
