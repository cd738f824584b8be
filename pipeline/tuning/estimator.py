"""The scikeras wrappers that scikit-learn's searches see: the one module that imports scikeras.

Parameters keep scikeras' routed names, read through the vocabulary's families
(`pipeline.spec.vocabulary.FAMILIES`): `model__*` -> the `NetworkSpec`, `optimizer` /
`optimizer__*` -> the `OptimizerSpec` (including `decay`, which Keras 3 optimizers no longer
take), `lr_schedule`, `early_stopping` and `checkpoint` (with their `__*` fields) -> fresh
callbacks built for every single fit.

Two modes. Trained for real (`replay_from=None`), a fit raises `CandidateFailed` when the
candidate's own settings fail it (divergence, an error) and lets infrastructure errors
(memory, disk) through unchanged. Replaying (`replay_from=<FitStore>`), `fit` trains nothing:
it looks up the record of this very (candidate, fold) fit, which the search trained before
scikit-learn's loop asked for it, and `RecordScorer` returns that record's scores.
"""

from __future__ import annotations

import inspect
import weakref
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..training.callbacks import make_callbacks  # first: loads TensorFlow quietly before scikeras imports it
from ..training.factory import build_model
from ..spec.vocabulary import CHECKPOINT, EARLY_STOPPING, NETWORK, OPTIMIZER, SCHEDULE, NetworkSpec
from ..training.single import TrainingDiverged, divergence
from .records import candidate_key, describe_error, fold_key, is_infrastructure

from scikeras.utils.random_state import tensorflow_random_state as seeding  # noqa: E402  (how scikeras seeds a fit)
from scikeras.wrappers import KerasClassifier, KerasRegressor  # noqa: E402
from sklearn.utils import ClassifierTags, RegressorTags  # noqa: E402

__all__ = ["PipelineClassifier", "PipelineRegressor", "CandidateFailed", "NotInJournal", "seeding"]


class CandidateFailed(RuntimeError):
    """The candidate's own settings failed its fit; `kind` is "diverged" or "error"."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind, self.reason = kind, reason


class NotInJournal(BaseException):
    """scikit-learn asked to replay a fit the search did not train first: a bug, never a score.
    A BaseException, so scikit-learn's per-fit `except Exception` cannot turn it into NaN."""


def _build_for_scikeras(meta: dict[str, Any], params: dict[str, Any], **network: Any):
    """scikeras build function: `meta` gives the data's shape, `params` the optimizer settings,
    `network` the routed `model__*` values. With a `context`, the last compiled model is reused
    when only the initial weights differ (see `pipeline.training.context`)."""
    regression = "n_classes_" not in meta  # a regressor's meta has no classes, whatever its targets look like
    spec = NETWORK.build({f"model__{name}": value for name, value in network.items()})
    build = dict(
        n_features=meta["n_features_in_"],
        n_outputs=meta.get("n_outputs_expected_", 1) if regression else meta["n_classes_"],
        output_activation="linear" if regression else "softmax",
        metrics=() if regression else ("accuracy",),
        loss=params["loss"],
        steps_per_execution=params.get("steps_per_execution", 1),
    )
    optimizer = OPTIMIZER.build(params)
    context = params.get("context")
    if context is not None:
        return context.models.solo(spec, optimizer, **build)
    return build_model(spec, optimizer=optimizer, **build)


# scikeras passes a build function the `model__*` arguments its signature names. A `**kwargs`
# signature would also make scikeras build its own optimizer from `optimizer__*` (a Keras 3
# optimizer drops `decay` with a warning), so the signature names the network's fields, read
# from the vocabulary. tests/integration/test_scikeras_contract.py pins what we rely on.
_build_for_scikeras.__signature__ = inspect.Signature(
    [inspect.Parameter("meta", inspect.Parameter.POSITIONAL_OR_KEYWORD),
     inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name in NetworkSpec.model_fields]
)


class _PipelineWrapper:
    """What both wrappers add to scikeras: the vocabulary's routing, per-fit callbacks, failure
    classification, replay from the fit store, and the search's training context."""

    _extra_prefixes = {SCHEDULE.prefix, EARLY_STOPPING.prefix, CHECKPOINT.prefix}

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
        member=None,
        context=None,
        replay_from=None,
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
        self.member = member  # a population member's lineage (strategy pbt): trains nothing, keys its fits
        self.context = context
        self.replay_from = replay_from

    def __sklearn_tags__(self):
        """scikeras 0.13 leaves `estimator_type` unset; scikit-learn >= 1.6 reads it from here."""
        tags = super().__sklearn_tags__()
        kind, field, tag_class = self._kind
        tags.estimator_type = kind
        setattr(tags, field, tag_class())
        tags.target_tags.required = True
        return tags

    @property
    def task(self) -> str:
        return "classification" if self._kind[0] == "classifier" else "regression"

    def fit(self, X, y, sample_weight=None, **kwargs):
        """Replay this fit's record (`replay_from` set), or train for real."""
        self.fit_data_ = weakref.ref(X) if hasattr(X, "__array__") else None
        if self.replay_from is not None:
            self.record_ = self.replay_from.lookup(candidate_key(self.get_params()), fold_key(X, y))
            if self.record_ is None:
                raise NotInJournal("a fit was replayed before it was trained; this is a bug in pipeline")
            return self
        if self.context is not None:
            self.context.stop.raise_if_requested()
        self._check_training_data(X, y, sample_weight)
        self.fold_key_ = fold_key(X, y) if self.checkpoint else None
        try:
            super().fit(X, y, sample_weight=sample_weight, **kwargs)
        except Exception as error:
            if is_infrastructure(error):
                raise
            raise CandidateFailed("error", describe_error(error)) from error
        diverged = divergence(self.history_.get("loss", []))
        if diverged:
            raise CandidateFailed("diverged", describe_error(TrainingDiverged(diverged)))
        return self

    def holding(self, X, y, weights: list, history: dict[str, list[float]]):
        """This estimator, built for (X, y) as `fit` builds it (encoders, model), holding weights
        trained elsewhere (in `get_weights()` order) and their history, untrained: what a fit
        trained by the fused engine gives as a fitted estimator (`pipeline.tuning.pbt`)."""
        self._check_training_data(X, y)
        self.initialize(X, y)
        self.model_.set_weights(weights)
        self.history_ = defaultdict(list, {name: list(values) for name, values in history.items()})
        return self

    def _check_training_data(self, X, y, sample_weight=None) -> None:
        """Refuse bad training data (missing, empty, sparse, complex, non-finite, mismatched
        lengths, several outputs, a continuous target for a classifier, sample weights of the
        wrong shape or all zero) as scikit-learn's own checks do, with their ValueError or
        TypeError: the caller's error, never recorded as the candidate's failure."""
        from sklearn.utils.multiclass import check_classification_targets
        from sklearn.utils.validation import check_X_y

        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        # one output per sample (what `build_model` builds); a column vector warns, as scikit-learn's estimators do
        X, y = check_X_y(X, y, accept_sparse=False, y_numeric=self.task == "regression", estimator=self)
        if self.task == "classification":
            check_classification_targets(y)
        if sample_weight is not None:
            self._validate_sample_weight(X, y, sample_weight)  # scikeras' own check, which its fit repeats

    def __getstate__(self):
        """Pickled (by joblib, by users) without `fit_data_`: a weak reference, which cannot be
        pickled, to the array of the last fit, used only by this process's replaying scorer."""
        state = super().__getstate__()
        state.pop("fit_data_", None)
        return state

    def is_fit_data(self, X) -> bool:
        """Whether `X` is the very array this estimator was fitted on (scikit-learn scores the
        training data with the same object it fitted)."""
        return getattr(self, "fit_data_", None) is not None and self.fit_data_() is X

    def specs(self) -> dict[str, Any]:
        """This candidate's settings as the vocabulary's sections, by family prefix."""
        params = self.get_params()
        return {family.prefix: family.build(params) for family in (NETWORK, OPTIMIZER, SCHEDULE, EARLY_STOPPING,
                                                                   CHECKPOINT)}

    def _initialize_callbacks(self) -> None:
        """scikeras' own `callbacks`, plus new stop/schedule/early-stopping/checkpoint objects for this fit."""
        super()._initialize_callbacks()
        specs = self.specs()
        self._fit_callbacks = list(self._fit_callbacks) + make_callbacks(
            schedule=specs[SCHEDULE.prefix],
            early_stopping=specs[EARLY_STOPPING.prefix],
            checkpoint=specs[CHECKPOINT.prefix],
            checkpoint_path=self._checkpoint_path() if self.checkpoint else None,
            terminate_on_nan=self.terminate_on_nan,
            stop=self.context.stop if self.context is not None else None,
        )

    def _checkpoint_path(self) -> Path:
        return checkpoint_path(self.checkpoint_dir, candidate_key(self.get_params()), self.fold_key_)


def checkpoint_path(checkpoint_dir, candidate: str, fold: str) -> Path:
    """One file per (candidate, training data): CV folds and candidates never share a checkpoint."""
    if checkpoint_dir is None:
        raise ValueError("checkpoint=True needs checkpoint_dir, the folder for per-fit checkpoint files")
    return Path(checkpoint_dir) / f"ckpt-{candidate}-{fold}.weights.h5"


class PipelineClassifier(_PipelineWrapper, KerasClassifier):
    """`KerasClassifier` over `build_model`, tagged as a classifier so CV is stratified.

    scikeras 0.13 predates scikit-learn's `__sklearn_tags__`, so `is_classifier()` is
    False for it and `cv=3` silently means unstratified KFold; `__sklearn_tags__` above
    restores the classifier tags.
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
