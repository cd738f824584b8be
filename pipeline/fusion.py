"""Fused searches: scikit-learn's searches, with candidates that can share a program trained together.

The design keeps scikit-learn's orchestration whole. `FusingSearch` (mixed into Grid, Randomized
and both halving searches) wraps `evaluate_candidates`: before scikit-learn fits a batch of
candidates, the candidates that differ only inside the model (see `pipeline.towers`) are grouped
per fold, each group is trained once as towers of one model, and every tower's fit is written to
the journal as the record a solo fit would have written. scikit-learn then runs its usual loop,
and every fused fit is *replayed* from the journal (the resume mechanism), so cv_results, ranking,
halving rounds, resume and failure handling work unchanged. Candidates that cannot be fused
(early stopping or checkpoints, which act per fit; a group of one; fusing off) train alone.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .estimator import (_data_key, _plain_params, _spend_new_fits, journal_index, params_key, routed,
                        training_failure)
from .journal import append_record, resident_mb

MODEL_PREFIX = "model__"


def tower_group_key(estimator) -> str | None:
    """What candidates must share to train as one program (all but the tower arguments), or None
    when this candidate must train alone."""
    from .towers import TOWER_ARGS

    if estimator.early_stopping or estimator.checkpoint:
        return None
    params = _plain_params(estimator.get_params())
    shared = {k: v for k, v in params.items() if not (k.startswith(MODEL_PREFIX) and k[len(MODEL_PREFIX):] in TOWER_ARGS)}
    shared["depth"] = len(params.get(f"{MODEL_PREFIX}hidden_layers") or ())  # towers differ in width, not depth
    return params_key(shared)


class FusingSearch:
    """Mixin for a scikit-learn search over a journaled `PipelineClassifier`/`PipelineRegressor`:
    trains the fusable candidates of every `evaluate_candidates` call in groups first.
    `max_towers` caps a group (1 turns fusing off)."""

    max_towers: int = 16

    def fit(self, X, y=None, **params):
        self._fit_data = (X, y)
        try:
            return super().fit(X, y, **params)
        finally:
            del self._fit_data

    def _run_search(self, evaluate_candidates, *, callback_ctx=None):
        def evaluate_fused_first(candidate_params, cv=None, more_results=None, **kwargs):
            candidate_params = list(candidate_params)
            if self.max_towers > 1:
                train_groups(self.estimator, candidate_params, cv or self.cv, *self._fit_data,
                             scorer=self.scoring, max_towers=self.max_towers)
            return evaluate_candidates(candidate_params, cv, more_results, **kwargs)

        # scikit-learn >= 1.9 passes a callback context through _run_search; older versions do not
        extra = {"callback_ctx": callback_ctx} if callback_ctx is not None else {}
        super()._run_search(evaluate_fused_first, **extra)


def fusing(search_class: type) -> type:
    """`search_class` with `FusingSearch` mixed in (e.g. `fusing(GridSearchCV)`)."""
    return type(f"Fused{search_class.__name__}", (FusingSearch, search_class), {})


def train_groups(estimator, candidate_params: list[dict[str, Any]], cv, X, y, *, scorer, max_towers: int) -> int:
    """Train, fold by fold, every group of two or more fusable candidates not yet journaled.
    Returns the number of fits journaled. `scorer` is the search's `JournalScorer`."""
    from sklearn.base import clone

    index = journal_index(estimator.journal_path)
    groups: dict[str, list[tuple[str, Any]]] = {}
    for params in candidate_params:
        candidate = clone(estimator).set_params(**params)
        key = tower_group_key(candidate)
        if key is not None:
            groups.setdefault(key, []).append((params_key(_plain_params(candidate.get_params())), candidate))
    journaled = 0
    X, y = np.asarray(X), np.asarray(y)
    for train, test in cv.split(X, y):
        fold = _data_key(X[train], y[train])
        for members in groups.values():
            pending = [(key, candidate) for key, candidate in members if index.lookup(key, fold) is None]
            for start in range(0, len(pending), max_towers):
                chunk = pending[start:start + max_towers]
                if len(chunk) > 1:
                    journaled += _train_group(chunk, X[train], y[train], X[test], y[test], fold, scorer)
    return journaled


def _train_group(members: list[tuple[str, Any]], X_train, y_train, X_test, y_test, fold: str, scorer) -> int:
    """Train `candidates` as towers of one model on one fold and journal one record per tower.
    If the program as a whole fails, nothing is journaled: the candidates then train alone,
    where each failure is recorded with its own reason."""
    from .callbacks import make_callbacks, raise_if_stop_requested
    from .towers import fit_towers

    raise_if_stop_requested()
    keys, candidates = [key for key, _ in members], [candidate for _, candidate in members]
    _spend_new_fits(len(candidates))
    first = candidates[0]
    params = first.get_params()
    started = time.perf_counter()
    try:
        fitted = fit_towers(
            [routed(c.get_params(), "model") for c in candidates], X_train, y_train,
            task=first._kind[0].replace("classifier", "classification").replace("regressor", "regression"),
            optimizer=first.optimizer, optimizer_args=routed(params, "optimizer"),
            epochs=first.epochs, batch_size=first.batch_size, validation_split=first.validation_split or 0.0,
            shuffle=first.shuffle, steps_per_execution=first.steps_per_execution, seed=first.random_state,
            callbacks=make_callbacks(lr_schedule=first.lr_schedule, schedule_params=routed(params, "lr_schedule"),
                                     terminate_on_nan=False),
        )
    except KeyboardInterrupt:
        raise
    except Exception:
        return 0
    fit_time = (time.perf_counter() - started) / len(candidates)
    group = params_key({"fold": fold, "members": keys})
    for tower, (key, candidate) in enumerate(members):
        history = fitted.histories[tower]
        failure = training_failure(history.get("loss", []))
        record = {"key": key, "fold": fold, "params": _plain_params(candidate.get_params()),
                  "error": failure, "fit_time": fit_time, "rss_mb": resident_mb(), "history": history,
                  "fused": {"group": group, "towers": len(candidates)}}
        if not failure:
            record["test_scores"] = scorer.scores(fitted.view(tower), X_test, y_test)
            if scorer.train_scores:
                record["train_scores"] = scorer.scores(fitted.view(tower), X_train, y_train)
        append_record(candidate.journal_path, record)
        if failure:
            candidate._check_failure_streak(failure)
    return len(candidates)
