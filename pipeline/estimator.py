"""scikeras wrappers around the model factory, with correct scikit-learn tags and per-fit callbacks.

Parameters keep scikeras' routed names, so a search space reaches the right place unchanged:
`model__*` -> `pipeline.models.build_model`, `optimizer` / `optimizer__*` -> its optimizer
(including `decay`, which Keras 3 optimizers no longer take), `lr_schedule` / `lr_schedule__*`,
`early_stopping` / `early_stopping__*` and `checkpoint` / `checkpoint__*` -> fresh callbacks
built for every single fit.

With `journal_path` set, every finished fit is journaled (see `pipeline.journal`) and a
fit already in the journal is *replayed*: not trained again, its recorded scores returned
by `JournalScorer`. That keeps scikit-learn's orchestration (grid, random, halving, joblib)
untouched while making a killed search resumable fit by fit.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .callbacks import make_callbacks, raise_if_stop_requested  # first: loads TensorFlow quietly before scikeras imports it
from .journal import append_record, data_key, journal_index, resident_mb
from .models import build_model, build_or_reuse_model

from scikeras.wrappers import KerasClassifier, KerasRegressor  # noqa: E402
from sklearn.utils import ClassifierTags, RegressorTags  # noqa: E402


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the candidate's score is recorded as NaN."""


class CandidateFailed(RuntimeError):
    """A fit failed outside a journaled search (inside one, failures are journaled and scored NaN)."""


class SearchAborted(BaseException):
    """Too many fits failed in a row. A BaseException, so scikit-learn's per-fit
    `except Exception` lets it through and the run stops."""


class RecycleWorker(BaseException):
    """This process has trained its quota of fits (`limit_new_fits`); a fresh process continues
    from the journal. TensorFlow leaks memory with every traced training function that no
    session clearing frees, so long searches train in a series of short-lived processes."""


_budget: dict[str, Any] = {"fits_left": None, "memory_growth": None, "baseline_mb": None, "started": 0}


def limit_new_fits(count: int | None, memory_growth: float | None = None) -> None:
    """Let this process train at most `count` more fits (replays are free), and stop once its
    resident memory has grown by `memory_growth` (a fraction) over its size after its first fit."""
    _budget.update(fits_left=count, memory_growth=memory_growth, baseline_mb=None, started=0)


# Estimator parameters that say where and how to run, not what to train: not part of a candidate's identity.
RUN_SETTINGS = frozenset({"checkpoint_dir", "journal_path", "max_consecutive_failures", "reuse_models", "verbose"})


def candidate_key(estimator, params: dict[str, Any]) -> str:
    """The journal key of `estimator` with `params` set: a hash of every hyperparameter."""
    from sklearn.base import clone

    return params_key(_plain_params(clone(estimator).set_params(**params).get_params()))


def _plain_params(params: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able hyperparameters (functions, callbacks and run settings left out), numpy scalars as Python."""
    plain = {}
    for name, value in params.items():
        value = value.item() if isinstance(value, np.generic) else value
        if name not in RUN_SETTINGS and (value is None or isinstance(value, (str, bool, int, float, tuple, list))):
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
    build = build_or_reuse_model if params.get("reuse_models") else build_model
    regression = meta.get("target_type_") == "continuous"
    return build(
        n_features=meta["n_features_in_"],
        n_outputs=meta.get("n_outputs_expected_", 1) if regression else meta["n_classes_"],
        output_activation="linear" if regression else "softmax",
        metrics=() if regression else ("accuracy",),
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


class _PipelineWrapper:
    """What both wrappers add to scikeras: extra routing prefixes, per-fit callbacks, the
    journal (record, replay, failure streak) and the process's fit budget."""

    _extra_prefixes = {"lr_schedule", "early_stopping", "checkpoint"}

    def __init__(
        self,
        model=_build_for_scikeras,
        *,
        optimizer="sgd",
        lr_schedule="none",
        early_stopping=False,
        checkpoint=False,
        checkpoint_dir=None,
        terminate_on_nan=True,
        steps_per_execution=1,
        journal_path=None,
        max_consecutive_failures=None,
        reuse_models=False,
        verbose=0,
        **kwargs,
    ):
        super().__init__(model=model, optimizer=optimizer, verbose=verbose, **kwargs)
        self.lr_schedule = lr_schedule
        self.early_stopping = early_stopping
        self.checkpoint = checkpoint
        self.checkpoint_dir = checkpoint_dir
        self.terminate_on_nan = terminate_on_nan
        self.steps_per_execution = steps_per_execution
        self.journal_path = journal_path
        self.max_consecutive_failures = max_consecutive_failures
        self.reuse_models = reuse_models

    def __sklearn_tags__(self):
        """scikeras 0.13 leaves `estimator_type` unset; scikit-learn >= 1.6 reads it from here."""
        tags = super().__sklearn_tags__()
        kind, field, tag_class = self._kind
        tags.estimator_type = kind
        setattr(tags, field, tag_class())
        tags.target_tags.required = True
        return tags

    def fit(self, X, y, sample_weight=None, **kwargs):
        """Fit, or replay the journaled result of this very fit; failures are journaled too."""
        raise_if_stop_requested()
        self.candidate_key_ = params_key(_plain_params(self.get_params()))
        self.fold_key_ = data_key(X, y) if (self.journal_path or self.checkpoint) else None
        self.n_fit_samples_ = len(X)
        self.replayed_ = journal_index(self.journal_path).lookup(self.candidate_key_, self.fold_key_) \
            if self.journal_path else None
        self.failure_ = self.replayed_.get("error") if self.replayed_ else None
        if self.replayed_ is None:
            _spend_new_fits(1)
            self._fit_or_fail(X, y, sample_weight, **kwargs)
        return self

    def _fit_or_fail(self, X, y, sample_weight, **kwargs) -> None:
        """Train. A failure is journaled and kept in `failure_` (scored NaN) when journaling,
        raised as `CandidateFailed` otherwise."""
        started = time.perf_counter()
        try:
            super().fit(X, y, sample_weight=sample_weight, **kwargs)
            diverged = divergence(self.history_.get("loss", []))
            if diverged:
                raise TrainingDiverged(diverged)
        except Exception as error:
            text = str(error).strip()
            reason = f"{type(error).__name__}: {text.splitlines()[0] if text else 'no message'}"
            if not self.journal_path:
                raise CandidateFailed(reason) from error
            self.failure_ = reason
            self._journal(error=reason, fit_time=time.perf_counter() - started)
            self._check_failure_streak(reason)
        self.fit_time_ = time.perf_counter() - started

    def _journal(self, **fields: Any) -> None:
        append_record(self.journal_path, {
            "key": self.candidate_key_, "fold": self.fold_key_,
            "params": _plain_params(self.get_params()), **fields,
        })

    def _check_failure_streak(self, reason: str) -> None:
        limit = self.max_consecutive_failures
        if limit and journal_index(self.journal_path).trailing_failures() >= limit:
            raise SearchAborted(f"{limit} fits in a row failed, the last with {reason}")

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
        return Path(self.checkpoint_dir) / f"ckpt-{candidate}-{self.fold_key_}.weights.h5"


class PipelineClassifier(_PipelineWrapper, KerasClassifier):
    """`KerasClassifier` over `build_model`, tagged as a classifier so CV is stratified.

    scikeras 0.13 predates scikit-learn's `__sklearn_tags__`, so `is_classifier()` is
    False for it and `cv=3` silently means unstratified KFold; `__sklearn_tags__` below
    restores the classifier tags. Callbacks are created anew in every fit.
    """

    _routing_prefixes = KerasClassifier._routing_prefixes | _PipelineWrapper._extra_prefixes

    _kind = ("classifier", "classifier_tags", ClassifierTags)

    def __init__(self, model=_build_for_scikeras, *, loss="sparse_categorical_crossentropy", **kwargs):
        super().__init__(model=model, loss=loss, **kwargs)


class PipelineRegressor(_PipelineWrapper, KerasRegressor):
    """`KerasRegressor` over `build_model` (linear output, MSE loss), tagged as a regressor."""

    _routing_prefixes = KerasRegressor._routing_prefixes | _PipelineWrapper._extra_prefixes

    _kind = ("regressor", "regressor_tags", RegressorTags)

    def __init__(self, model=_build_for_scikeras, *, loss="mse", **kwargs):
        super().__init__(model=model, loss=loss, **kwargs)


def divergence(losses: list[float]) -> str | None:
    """What went wrong with a fit whose loss history ends non-finite (diverged), else None."""
    if losses and not np.isfinite(losses[-1]):
        epoch = next(i for i, loss in enumerate(losses, start=1) if not np.isfinite(loss))
        return f"loss became {losses[-1]} in epoch {epoch}; lower the learning rate"
    return None


def _spend_new_fits(count: int) -> None:
    """Raise RecycleWorker when this process has used up its budget of new fits or memory.
    A fused group of `count` fits may overdraw the budget: it is never split across processes."""
    if _budget["fits_left"] is not None:
        if _budget["fits_left"] <= 0:
            raise RecycleWorker
        _budget["fits_left"] -= count
    _budget["started"] += 1
    growth, rss = _budget["memory_growth"], resident_mb()
    if growth and rss:
        if _budget["started"] == 2:  # after one whole fit: TensorFlow and the data are loaded
            _budget["baseline_mb"] = rss
        elif _budget["baseline_mb"] and rss > _budget["baseline_mb"] * (1 + growth):
            raise RecycleWorker


class JournalScorer:
    """A scikit-learn scorer that journals each fit's scores and returns journaled ones on replay.

    `metrics` maps names to scikit-learn scorer names; the first is the primary score. With one
    metric it returns a number, with several a dict (scikit-learn's multi-metric scoring).
    scikit-learn scores the test fold first, then (with `return_train_score`) the training data
    the estimator was fitted on; the record is complete, and written, after the last one.
    """

    def __init__(self, metrics: dict[str, str], train_scores: bool):
        from sklearn.metrics import get_scorer

        self.metrics, self.train_scores = dict(metrics), train_scores
        self._scorers = {name: get_scorer(scoring) for name, scoring in self.metrics.items()}

    def __call__(self, estimator, X, y, **kwargs):
        on_training_data = (estimator.fold_key_ is not None and len(X) == getattr(estimator, "n_fit_samples_", len(X))
                            and data_key(X, y) == estimator.fold_key_)
        part = "train" if on_training_data else "test"
        if getattr(estimator, "failure_", None):
            scores = {name: float("nan") for name in self.metrics}
        elif getattr(estimator, "replayed_", None) is not None:
            scores = estimator.replayed_[f"{part}_scores"]
        else:
            scores = self.scores(estimator, X, y, **kwargs)
            if estimator.journal_path:
                estimator.scores_ = {**getattr(estimator, "scores_", {}), f"{part}_scores": scores}
                if on_training_data or not self.train_scores:
                    history = {k: [float(v) for v in values] for k, values in estimator.history_.items()}
                    estimator._journal(error=None, fit_time=estimator.fit_time_, rss_mb=resident_mb(),
                                       history=history, **estimator.scores_)
        return scores if len(self.metrics) > 1 else next(iter(scores.values()))

    def scores(self, estimator, X, y, **kwargs) -> dict[str, float]:
        """Every metric of a fitted `estimator` on (X, y)."""
        return {name: float(scorer(estimator, X, y, **kwargs)) for name, scorer in self._scorers.items()}
