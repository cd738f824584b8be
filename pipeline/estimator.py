"""scikeras wrappers around the model factory, with correct scikit-learn tags and per-fit callbacks.

Parameters keep scikeras' routed names, so a search space reaches the right place unchanged:
`model__*` -> `pipeline.models.build_model`, `optimizer` / `optimizer__*` -> its optimizer
(including `decay`, which Keras 3 optimizers no longer take), `lr_schedule` / `lr_schedule__*`,
`early_stopping` / `early_stopping__*` and `checkpoint` / `checkpoint__*` -> fresh callbacks
built for every single fit.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .callbacks import make_callbacks  # first: loads TensorFlow quietly before scikeras imports it
from .models import build_model

from scikeras.wrappers import KerasClassifier  # noqa: E402
from sklearn.utils import ClassifierTags  # noqa: E402


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the candidate's score is recorded as NaN."""


class CandidateFailed(RuntimeError):
    """A fit failed; the message starts with `[candidate <key>]` so the search can tell whose error it is.

    scikit-learn reports failed fits only as text (in a FitFailedWarning, also across worker
    processes); the key ties each reason back to its row of `cv_results_`.
    """


_fit_listeners: list[Callable[[], None]] = []


@contextmanager
def fit_listener(callback: Callable[[], None]) -> Iterator[None]:
    """Call `callback()` after every fit in this process ends (success or failure): progress bars."""
    _fit_listeners.append(callback)
    try:
        yield
    finally:
        _fit_listeners.remove(callback)


def candidate_key(estimator, params: dict[str, Any]) -> str:
    """The key a fit of `estimator` with `params` reports in `CandidateFailed` messages."""
    from sklearn.base import clone

    return params_key(_plain_params(clone(estimator).set_params(**params).get_params()))


def _plain_params(params: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able hyperparameters (functions, callbacks and folders left out), numpy scalars as Python."""
    plain = {}
    for name, value in params.items():
        value = value.item() if isinstance(value, np.generic) else value
        if name != "checkpoint_dir" and (value is None or isinstance(value, (str, bool, int, float, tuple, list))):
            plain[name] = list(value) if isinstance(value, tuple) else value
    return plain


def _build_for_scikeras(
    meta: dict[str, Any],
    params: dict[str, Any],
    *,
    hidden_layers=None, activation=None, init_mode=None, bias_init=None, dropout=None,
    l1=None, l2=None, bias_l1=None, bias_l2=None,
):
    """scikeras build function: `meta` gives the data's shape, `params` the optimizer settings.

    The network arguments are spelled out (None = the factory's default) rather than taken as
    `**kwargs`: given `**kwargs`, scikeras would also build its own optimizer from
    `optimizer__*`, which fails for `decay`.
    """
    given = dict(hidden_layers=hidden_layers, activation=activation, init_mode=init_mode, bias_init=bias_init,
                 dropout=dropout, l1=l1, l2=l2, bias_l1=bias_l1, bias_l2=bias_l2)
    return build_model(
        n_features=meta["n_features_in_"],
        n_outputs=meta["n_classes_"],
        loss=params["loss"],
        optimizer=params["optimizer"],
        **routed(params, "optimizer"),
        steps_per_execution=params.get("steps_per_execution", 1),
        **{k: v for k, v in given.items() if v is not None},
    )


def routed(params: dict[str, Any], prefix: str) -> dict[str, Any]:
    """scikeras-style routing: `{prefix}__name` entries as `name` (deeper `a__b__c` names are skipped)."""
    start = f"{prefix}__"
    return {k[len(start):]: v for k, v in params.items() if k.startswith(start) and "__" not in k[len(start):]}


def params_key(params: dict[str, Any]) -> str:
    """A short stable hash of a parameter dict (order-independent), for file names and journals."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class PipelineClassifier(KerasClassifier):
    """`KerasClassifier` over `build_model`, tagged as a classifier so CV is stratified.

    scikeras 0.13 predates scikit-learn's `__sklearn_tags__`, so `is_classifier()` is
    False for it and `cv=3` silently means unstratified KFold; `__sklearn_tags__` below
    restores the classifier tags. Callbacks are created anew in every fit.
    """

    _routing_prefixes = KerasClassifier._routing_prefixes | {"lr_schedule", "early_stopping", "checkpoint"}

    def __init__(
        self,
        model=_build_for_scikeras,
        *,
        loss="sparse_categorical_crossentropy",
        optimizer="sgd",
        lr_schedule="none",
        early_stopping=False,
        checkpoint=False,
        checkpoint_dir=None,
        terminate_on_nan=True,
        steps_per_execution=1,
        verbose=0,
        **kwargs,
    ):
        super().__init__(model=model, loss=loss, optimizer=optimizer, verbose=verbose, **kwargs)
        self.lr_schedule = lr_schedule
        self.early_stopping = early_stopping
        self.checkpoint = checkpoint
        self.checkpoint_dir = checkpoint_dir
        self.terminate_on_nan = terminate_on_nan
        self.steps_per_execution = steps_per_execution

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags()
        tags.target_tags.required = True
        return tags

    def fit(self, X, y, sample_weight=None, **kwargs):
        """Fit; a diverged loss or any error becomes `CandidateFailed` naming this candidate."""
        try:
            self._data_key = _data_key(X, y) if self.checkpoint else None
            super().fit(X, y, sample_weight=sample_weight, **kwargs)
            losses = self.history_.get("loss", [])
            if losses and not np.isfinite(losses[-1]):
                raise TrainingDiverged(f"loss became {losses[-1]} in epoch {len(losses)}; lower the learning rate")
        except Exception as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            key = params_key(_plain_params(self.get_params()))
            raise CandidateFailed(f"[candidate {key}] {type(error).__name__}: {reason}") from error
        finally:
            for listener in _fit_listeners:
                listener()
        return self

    def _initialize_callbacks(self) -> None:
        """scikeras' own `callbacks`, plus new schedule/early-stopping/checkpoint objects for this fit."""
        super()._initialize_callbacks()
        params = self.get_params()
        self._fit_callbacks = list(self._fit_callbacks) + make_callbacks(
            lr_schedule=self.lr_schedule,
            schedule_params=routed(params, "lr_schedule"),
            early_stopping=routed(params, "early_stopping") if self.early_stopping else None,
            checkpoint=routed(params, "checkpoint") if self.checkpoint else None,
            checkpoint_path=self._checkpoint_path() if self.checkpoint else None,
            terminate_on_nan=self.terminate_on_nan,
        )

    def _checkpoint_path(self) -> Path:
        """One file per (candidate, training data): CV folds and candidates never share a checkpoint."""
        if self.checkpoint_dir is None:
            raise ValueError("checkpoint=True needs checkpoint_dir, the folder for per-fit checkpoint files")
        candidate = params_key(_plain_params(self.get_params()))
        return Path(self.checkpoint_dir) / f"ckpt-{candidate}-{self._data_key}.weights.h5"


def _data_key(X, y) -> str:
    """A short fingerprint of a training set (its rows and labels)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(X).view(np.uint8).data)
    digest.update(np.ascontiguousarray(y).view(np.uint8).data)
    return digest.hexdigest()[:12]
