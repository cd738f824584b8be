"""A search run's folder over its life: started, resumed (after checking what must not change), ended.

A run folder holds `config.yaml` (the resolved config), `run.json` (status, identity, how it
executes) and the fit journal. Its identity is what the results depend on: the config's
`identity()` (data, model, training, space, seed; not how it executes), the data really used
and the code (a hash of every module of the package, and the library versions). A resume
checks all of it, including that `config.yaml` still matches the identity recorded at the
start. How the run executes (`execution.*`: backend, scheduler, workers, recycling, fusing)
may change on resume; `config.yaml` and `run.json` then record the new settings.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import PipelineError
from ..core.files import create_run_dir, library_versions, read_json, utc_now, write_json_atomic, write_text_atomic
from ..data import Dataset, load_dataset
from ..spec.config import ExperimentConfig, first_difference, load_config
from .records import fold_key

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
IDENTITY_LIBRARIES = ("pipeline", "keras", "scikeras", "scikit-learn")


def code_hash(root: Path = PACKAGE_ROOT) -> str:
    """A hash of every Python module of the package, sub-packages included (paths and contents)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def run_identity(config: ExperimentConfig, dataset: Dataset) -> dict[str, Any]:
    """What a resumed run must share with the original: config identity, data and code."""
    versions = library_versions()
    return {
        "config": config.identity_hash(),
        "data": f"{dataset.name}:{fold_key(dataset.x_train, dataset.y_train)}:{fold_key(dataset.x_test, dataset.y_test)}",
        "code": {"pipeline_source": code_hash(), **{k: versions.get(k) for k in IDENTITY_LIBRARIES}},
    }


def check_folds(config: ExperimentConfig, dataset: Dataset) -> None:
    """Every fold needs a sample of every class (and at least one sample)."""
    if dataset.task != "classification":
        if config.cv.folds > len(dataset.y_train):
            raise PipelineError(f"cv.folds={config.cv.folds} but only {len(dataset.y_train)} training samples; "
                                "lower cv.folds")
        return
    counts = np.bincount(dataset.y_train)
    smallest = int(counts[counts > 0].min())
    if config.cv.folds > smallest:
        label = int(np.flatnonzero(counts == smallest)[0])
        raise PipelineError(f"cv.folds={config.cv.folds} but class {label} has only {smallest} training samples; "
                            "lower cv.folds or use more data (data.train_samples)")


def start_run(config: ExperimentConfig, dataset: Dataset) -> Path:
    """Create the run folder (exclusively) with the resolved config and the run's identity."""
    check_folds(config, dataset)
    run_dir = create_run_dir(config.output_dir, config.experiment)
    write_text_atomic(run_dir / "config.yaml", config.to_yaml())
    write_json_atomic(run_dir / "run.json", {
        "kind": "search", "status": "running", "experiment": config.experiment, "started": utc_now(),
        "identity": run_identity(config, dataset), "execution": config.execution.model_dump(mode="json"),
        "dataset": dataset.summary(), "versions": library_versions(),
    })
    return run_dir


def load_run_dataset(run_dir: Path) -> tuple[ExperimentConfig, Dataset]:
    """A run's saved config and the dataset it really used: a run that fell back to
    `mnist-sample` gets `mnist-sample` again, even if full MNIST has become available since."""
    for name in ("config.yaml", "run.json"):
        if not (run_dir / name).is_file():
            raise PipelineError(f"{run_dir}: {name} is missing; give a run folder written by pipeline.search")
    saved = load_config(run_dir / "config.yaml", search=True)
    recorded = read_json(run_dir / "run.json").get("identity", {})
    data_config = saved.data
    if saved.data.name == "mnist" and str(recorded.get("data", "")).startswith("mnist-sample:"):
        data_config = saved.data.model_copy(update={"name": "mnist-sample"})
    return saved, load_dataset(data_config, saved.seed)


def resume_run(run_dir: Path, given: ExperimentConfig | None = None,
               record_execution: bool = True) -> tuple[ExperimentConfig, Dataset]:
    """The run's config (with `given`'s execution settings, if given, recorded in the run unless
    `record_execution` is False) and data, after checking that nothing the results depend on
    has changed: config identity, data, code."""
    if not run_dir.is_dir():
        raise PipelineError(f"--resume {run_dir}: no such run folder; give outputs/<run> of an earlier search")
    saved, dataset = load_run_dataset(run_dir)
    if given is not None and given.identity() != saved.identity():
        where = first_difference(saved.identity(), given.identity())
        raise PipelineError(f"--resume {run_dir}: the given config differs from the run's at {where}; only "
                            "execution.* may change on resume: drop the other --config/--set values, or start a new run")
    recorded = read_json(run_dir / "run.json").get("identity", {})
    current = run_identity(saved, dataset)
    for part, what in (("config", "config.yaml"), ("data", "dataset"), ("code", "code version")):
        if recorded.get(part) != current[part]:
            raise PipelineError(f"--resume {run_dir}: the {what} differs from the one the run started with "
                                f"({recorded.get(part)} != {current[part]}); start a new run")
    if given is not None and given.execution != saved.execution and record_execution:
        saved = saved.model_copy(update={"execution": given.execution})
        write_text_atomic(run_dir / "config.yaml", saved.to_yaml())
        update_run(run_dir, execution=saved.execution.model_dump(mode="json"))
    return saved, dataset


def finished(run_dir: Path) -> bool:
    """Whether the run completed (results, best model and report written): a resume has nothing to do."""
    return (run_dir / "run.json").is_file() and read_json(run_dir / "run.json").get("status") == "finished"


def update_run(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into run.json (atomically); returns the new content."""
    content = {**read_json(run_dir / "run.json"), **fields}
    write_json_atomic(run_dir / "run.json", content)
    return content


def mark_run(run_dir: Path, status: str, **fields: Any) -> None:
    """Record in run.json how a run ended when it did not finish (interrupted, aborted)."""
    update_run(run_dir, status=status, stopped=utc_now(), **fields)
