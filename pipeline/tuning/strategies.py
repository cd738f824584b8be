"""The configured scikit-learn search (grid, random, successive halving), its folds and its scoring,
and the count of its fits taken from scikit-learn's own candidate generation. Free of TensorFlow.

Every search class gets a mixin that takes over `_run_search`, scikit-learn's documented hook
for a search's candidate generation: `pipeline.tuning.session.TrainFirst` (train every pending
fit first, then let scikit-learn's loop replay the records) or `CountFits` (record how many
candidates each round asks for, train nothing). So the counts of `--dry-run` and of the
progress bar are scikit-learn's, for every strategy, dataset size and task.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ..data import Dataset
from ..spec.config import ExperimentConfig
from ..spec.space import param_space

STRATEGY_CLASSES = {"grid": "GridSearchCV", "random": "RandomizedSearchCV",
                    "halving-grid": "HalvingGridSearchCV", "halving-random": "HalvingRandomSearchCV"}


def scoring_metrics(config: ExperimentConfig, task: str) -> dict[str, str]:
    """Metric name -> scikit-learn scorer, primary first: accuracy for classes; negative MSE and R^2
    for regression (halving, tpe and pbt, which rank by one score only, get the primary alone)."""
    if task == "classification":
        primary = config.search.scoring or "accuracy"
        return {primary: primary}
    primary = config.search.scoring or "neg_mean_squared_error"
    metrics = {primary: primary}
    if primary != "r2" and config.search.strategy not in ("halving-grid", "halving-random", "tpe", "pbt"):
        metrics["r2"] = "r2"
    return metrics


class RecordScorer:
    """A scikit-learn scorer over fit records: `scores` computes every metric of a fitted model
    (when a fit is trained); calling it returns the recorded scores of a replayed fit, the
    training part when scikit-learn passes the very array the fit trained on.

    With one metric it returns a number, with several a dict (scikit-learn's multi-metric scoring).
    """

    def __init__(self, metrics: dict[str, str], train_scores: bool = True):
        from sklearn.metrics import get_scorer

        self.metrics, self.train_scores = dict(metrics), train_scores
        self._scorers = {name: get_scorer(scoring) for name, scoring in self.metrics.items()}

    def scores(self, estimator, X, y) -> dict[str, float]:
        """Every metric of a fitted `estimator` on (X, y)."""
        return {name: float(scorer(estimator, X, y)) for name, scorer in self._scorers.items()}

    def __call__(self, estimator, X, y, **kwargs):
        part = "train" if estimator.is_fit_data(X) else "test"
        scores = estimator.record_.scores(part, self.metrics)
        return scores if len(self.metrics) > 1 else next(iter(scores.values()))


def make_cv(config: ExperimentConfig, task: str):
    """Seeded stratified folds for classes, plain folds for regression; repeated `cv.repeats` times."""
    from sklearn.model_selection import KFold, RepeatedKFold, RepeatedStratifiedKFold, StratifiedKFold

    cv = config.cv
    if cv.repeats > 1:
        splitter = RepeatedStratifiedKFold if task == "classification" else RepeatedKFold
        return splitter(n_splits=cv.folds, n_repeats=cv.repeats, random_state=config.seed)
    splitter = StratifiedKFold if task == "classification" else KFold
    return splitter(n_splits=cv.folds, shuffle=cv.shuffle, random_state=config.seed if cv.shuffle else None)


def build_search(config: ExperimentConfig, estimator, cv, mixin: type, scoring):
    """The configured scikit-learn search with `mixin` (refit=False, error_score=nan, train scores kept)."""
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (registers the Halving* classes)
    from sklearn import model_selection

    from .pruning import Ladder, PrunedRandom

    search = config.search
    if search.strategy == "tpe":
        from .tpe import TPESearchCV

        bases = (TPESearchCV,)
    elif search.strategy == "pbt":
        from .pbt import PBTSearchCV

        bases = (PBTSearchCV,)
    else:
        bases = (getattr(model_selection, STRATEGY_CLASSES[search.strategy]),)
        if search.pruning is not None:
            bases = (PrunedRandom, *bases)
    search_class = type(f"{mixin.__name__}{bases[-1].__name__}", (mixin, *bases), {})
    space = param_space(config)
    common = dict(scoring=scoring, cv=cv, refit=False, error_score=np.nan, return_train_score=True, n_jobs=1)
    halving = dict(resource=search.resource, factor=search.factor, random_state=config.seed,
                   min_resources=search.min_resources or "smallest")
    if search.resource == "epochs":
        halving["max_resources"] = config.training.epochs
    if search.strategy == "grid":
        return search_class(estimator, space, **common)
    if search.strategy == "halving-grid":
        return search_class(estimator, space, **common, **halving)
    if search.strategy == "halving-random":
        return search_class(estimator, space, n_candidates=search.n_iter, **common, **halving)
    if search.strategy == "pbt":
        return search_class(estimator, search.grids(), pbt=search.pbt, epochs=config.training.epochs,
                            perturbed=search.pbt.perturbed(search.searched()), random_state=config.seed, **common)
    if search.strategy == "tpe":
        built = search_class(estimator, search.grids(), n_trials=search.n_trials, batch=search.batch,
                             random_state=config.seed, **common)
    else:
        built = search_class(estimator, space, n_iter=search.n_iter, random_state=config.seed, **common)
    if search.pruning is not None:
        built.ladder = Ladder(search.pruning.rungs(config.training.epochs), search.pruning.reduction)
        built.batch = search.batch  # a pruned random search's batches (PrunedRandom); tpe's own argument
    return built


@dataclass(frozen=True)
class Plan:
    """How much work a search is: candidates per round (one round unless halving) and the splits
    each is scored on (`folds`: cv.folds x cv.repeats)."""

    candidates: tuple[int, ...]
    folds: int

    @property
    def fits(self) -> int:
        """Every fit, the refit of the best candidate included."""
        return sum(self.candidates) * self.folds + 1


class _Counted(Exception):
    """Leaves `fit` once `_run_search` has generated every round."""


class CountFits:
    """Search mixin: run scikit-learn's candidate generation with a recording `evaluate_candidates`
    (scores all equal) and keep the candidates of each round in `rounds_`; nothing trains."""

    def fit(self, X, y=None, **params):
        self.rounds_ = []
        try:
            super().fit(X, y, **params)
        except _Counted:
            pass
        return self

    def _run_search(self, evaluate_candidates, *, callback_ctx=None):
        results: dict[str, list] = defaultdict(list)

        def record(candidate_params, cv=None, more_results=None, **kwargs):
            candidates = list(candidate_params)
            self.rounds_.append(len(candidates))
            results["params"].extend(candidates)
            results["mean_test_score"].extend([0.0] * len(candidates))
            for name, values in (more_results or {}).items():
                results[name].extend(values)
            return dict(results)

        super()._run_search(record, **({"callback_ctx": callback_ctx} if callback_ctx is not None else {}))
        raise _Counted


class _StandIn:
    """A TensorFlow-free estimator with the parameters halving may set, standing in for the real one."""

    def __init__(self, epochs=1, batch_size=32):
        self.epochs, self.batch_size = epochs, batch_size

    def fit(self, X, y):
        raise AssertionError("counting never fits")


def count_fits(config: ExperimentConfig, dataset: Dataset) -> Plan:
    """The candidates of every round on `dataset`, from scikit-learn's own search (nothing trains)."""
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

    kind = ClassifierMixin if dataset.task == "classification" else RegressorMixin
    stand_in = type("StandIn", (_StandIn, kind, BaseEstimator), {})()
    search = build_search(config, stand_in, make_cv(config, dataset.task), CountFits,
                          scoring=next(iter(scoring_metrics(config, dataset.task).values())))
    search.fit(dataset.x_train, dataset.y_train)
    return Plan(tuple(search.rounds_), config.cv.splits)
