"""The fit record: one (candidate, fold) fit, its scores and how it went, built one way by every trainer.

A fit is identified by two keys. The candidate key hashes every hyperparameter of the
estimator (not only the searched ones), built strictly: a value that cannot be written as
JSON faithfully is an error, never dropped, so two different candidates can never share a
key. The fold key is a SHA-256 of the training rows and labels the fit saw. Together
they find a fit again on resume, whatever order and whichever process trained it.

Failures come in two kinds. A *candidate failure* (the loss diverged, or the candidate's own
settings raised) is a result: recorded, replayed, scored NaN. An *infrastructure failure*
(out of memory, a full disk, a killed or lost worker) says nothing about the candidate: it is
never recorded as a result (see `pipeline.tuning.session`), and the fit runs again.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..core.errors import PipelineError

# Estimator parameters that say where and how a fit runs, not what it trains.
NOT_HYPERPARAMETERS = frozenset({"model", "verbose", "context", "replay_from", "checkpoint_dir"})
# A population member's lineage (`pipeline.tuning.pbt`): part of its fits' keys when set, left out
# when not, so that the keys of every other search stay what they were.
KEYED_WHEN_SET = frozenset({"member"})
FAILURE_KINDS = ("diverged", "error")


class InfrastructureFailure(Exception):
    """A fit could not run for a reason outside the candidate (memory, disk, a lost worker)."""


def is_infrastructure(error: BaseException) -> bool:
    """Out of memory (Python's or TensorFlow's), the file system (disk full, I/O), a lost worker process."""
    if isinstance(error, (InfrastructureFailure, MemoryError, OSError)):
        return True
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"ResourceExhaustedError", "TerminatedWorkerError", "KilledWorker", "CommClosedError"})


def describe_error(error: BaseException) -> str:
    """`Type: first line of the message`, for a record or a log line."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else 'no message'}"


def plain_value(name: str, value: Any) -> Any:
    """A hyperparameter value as plain JSON (numpy scalars as Python, tuples as lists), or PipelineError."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (tuple, list)):
        return [plain_value(name, item) for item in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise PipelineError(f"hyperparameter {name}={value!r} ({type(value).__name__}) cannot be keyed for the fit "
                        "journal; give numbers, strings, booleans or lists of them")


def hyperparameters(params: dict[str, Any]) -> dict[str, Any]:
    """The estimator parameters that define a candidate, as plain JSON values (strict)."""
    return {name: plain_value(name, value) for name, value in sorted(params.items())
            if name not in NOT_HYPERPARAMETERS and not (name in KEYED_WHEN_SET and value is None)}


def candidate_key(params: dict[str, Any]) -> str:
    """The key of a candidate: a hash of all its hyperparameters (`estimator.get_params()`)."""
    return params_key(hyperparameters(params))


def params_key(params: dict[str, Any]) -> str:
    """A short stable hash of a plain parameter mapping (order-independent)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def fold_key(X, y) -> str:
    """The key of the data a fit trained on: SHA-256 of both arrays' dtypes, shapes and values.
    Every replayed fit hashes its training rows; over bytes this takes less than half the time
    of `joblib.hash` (9 against 22 ms for a 5,333-digit fold, ad hoc, here). Arrays of Python
    objects, whose bytes are pointers, go through `joblib.hash`."""
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(X), np.ascontiguousarray(y)):
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        if array.dtype.hasobject:
            import joblib

            digest.update(joblib.hash(array).encode())
        else:
            digest.update(array.data)
    return digest.hexdigest()[:16]


def resident_mb() -> float:
    """This process's resident memory in MB."""
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


@dataclass(frozen=True)
class FitRecord:
    """One finished (candidate, fold) fit: a result, or a candidate failure (scores NaN on replay)."""

    key: str
    fold: str
    params: dict[str, Any]
    test_scores: dict[str, float] = field(default_factory=dict)
    train_scores: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    fit_time: float = 0.0
    trainer: dict[str, Any] = field(default_factory=dict)
    failure: dict[str, str] | None = None
    time: float = 0.0

    @classmethod
    def of(cls, key: str, fold: str, params: dict[str, Any], *, fit_time: float, history=None, test_scores=None,
           train_scores=None, failure: tuple[str, str] | None = None, fused: dict[str, Any] | None = None) -> "FitRecord":
        """The record of a fit that just finished in this process (where it trained is filled in here)."""
        if failure is not None and failure[0] not in FAILURE_KINDS:
            raise ValueError(f"failure kind {failure[0]!r} is not one of {FAILURE_KINDS}")
        return cls(
            key=key, fold=fold, params=params,
            test_scores={k: float(v) for k, v in (test_scores or {}).items()},
            train_scores={k: float(v) for k, v in (train_scores or {}).items()},
            history={k: [float(v) for v in values] for k, values in (history or {}).items()},
            fit_time=round(float(fit_time), 4),
            trainer={"pid": os.getpid(), "host": socket.gethostname(), "rss_mb": resident_mb(), "fused": fused},
            failure={"kind": failure[0], "reason": failure[1]} if failure else None,
            time=round(time.time(), 3),
        )

    @property
    def failed(self) -> bool:
        return self.failure is not None

    @property
    def reason(self) -> str:
        return self.failure["reason"] if self.failure else ""

    def scores(self, part: str, metrics) -> dict[str, float]:
        """The `part` ("test" or "train") scores, NaN for a failed fit."""
        if self.failed:
            return {name: float("nan") for name in metrics}
        return self.test_scores if part == "test" else self.train_scores

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FitRecord":
        """A record read back from the journal; unknown or missing fields are a ValueError."""
        names = set(cls.__dataclass_fields__)
        if not isinstance(data, dict) or not {"key", "fold", "params"} <= set(data) or set(data) - names:
            raise ValueError("not a fit record")
        return cls(**data)
