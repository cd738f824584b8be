"""pipeline: config-driven hyperparameter searches over Keras Sequential classifiers.

The public API is small and imported lazily, so `import pipeline` stays fast and
TensorFlow loads only when a function that needs it is called. The layers, highest first
(each may import only those below it; `tests/unit/test_layers.py` checks it):
`cli` > `tuning` > `training` > `data` > `spec`, `review` > `core`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "PipelineError",
    "load_config",
    "load_dataset",
    "build_model",
    "train_model",
    "run_search",
    "load_model",
]

_WHERE = {
    "PipelineError": "core.errors",
    "load_config": "spec.config",
    "load_dataset": "data.datasets",
    "build_model": "training.factory",
    "train_model": "training.single",
    "run_search": "tuning.run",
    "load_model": "training.persistence",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    return getattr(import_module(f".{_WHERE[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)
