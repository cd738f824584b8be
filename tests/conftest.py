"""Shared fixtures: seeding, tiny config files, and one tiny search run that several tests read."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.core.errors import run_cli

PROJECT = Path(__file__).resolve().parent.parent

TINY = {
    "experiment": "tiny",
    "seed": 3,
    "data": {"name": "mnist-sample", "train_samples": 300, "test_samples": 100, "validation_split": 0.1},
    "model": {"hidden_layers": [16], "dropout": 0.0},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "training": {"epochs": 2, "batch_size": 32},
    "cv": {"folds": 2},
}


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)


def write_config(folder: Path, name: str = "tiny.yaml", **sections) -> Path:
    """A YAML config in `folder`: TINY with `sections` replacing whole top-level keys.

    Searches train in the test's own process (`fits_per_process: 0`, `n_jobs: 1`: saving a
    TensorFlow start-up per test) unless the execution section asks for worker processes itself.
    """
    if "search" in sections:
        sections["execution"] = {"fits_per_process": 0, "n_jobs": 1, **sections.get("execution", {})}
    path = folder / name
    path.write_text(yaml.safe_dump({**TINY, **sections}, sort_keys=False))
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for servers the tests start)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_main(main, argv) -> int:
    """Run a CLI main as the `python -m` entry point does (errors -> exit code 2)."""
    return run_cli(main, [str(a) for a in argv])


@pytest.fixture(scope="session")
def tiny_search_run(tmp_path_factory):
    """One small grid search run (4 candidates x 2 folds on 300 digits), shared by read-only tests."""
    from pipeline.search import main

    folder = tmp_path_factory.mktemp("tiny_search")
    config = write_config(folder, search={"strategy": "grid", "params": {
        "model__init_mode": ["zeros", "glorot_uniform"], "batch_size": [16, 32]}})
    assert run_main(main, ["--config", config, "--output-dir", folder / "outputs", "--quiet"]) == 0
    (run_dir,) = (folder / "outputs").iterdir()
    return run_dir


def read_tensorboard(folder: Path) -> dict[str, dict]:
    """Every run of a TensorBoard log folder, read back from its event files with TensorBoard's
    own reader: {run: {"experiment" | "session": parsed HParams data, "scalars": {tag: [(step, value)]}}}
    ("." is the folder itself)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata as hparams_metadata
    from tensorboard.util import tensor_util

    runs: dict[str, dict] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        run = runs.setdefault(path.parent.relative_to(folder).as_posix(), {"scalars": {}})
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                plugin = value.metadata.plugin_data
                if plugin.plugin_name == "hparams":
                    data = plugin.content
                    if value.tag == hparams_metadata.EXPERIMENT_TAG:
                        run["experiment"] = hparams_metadata.parse_experiment_plugin_data(data)
                    elif value.tag == hparams_metadata.SESSION_START_INFO_TAG:
                        run["session"] = hparams_metadata.parse_session_start_info_plugin_data(data)
                else:
                    number = tensor_util.make_ndarray(value.tensor).item()
                    run["scalars"].setdefault(value.tag, []).append((event.step, number))
    return runs
