"""`search.strategy: tpe`: Optuna's TPE sampler asking for candidates, scikit-learn's search loop
scoring them, a batch at a time.

`TPESearchCV` is a scikit-learn search whose `_run_search` (the documented hook every search
class implements) asks Optuna's `TPESampler(multivariate=True, constant_liar=True)` for a batch
of trials, hands them to `evaluate_candidates` as one call, so that the session trains them
together (fused where they can be, see `pipeline.tuning.engine`), and tells each trial its mean
CV score (a failed candidate: a failed trial). The study lives in memory only: the fit journal
stays the one record. On `--resume` the same loop runs again; finished fits are replayed from the
journal, so the study is told the same scores in the same order, and the seeded sampler asks the
same next trials an uninterrupted run would ask.

The space is the config's `search.params`, as for the random strategies: a list is a categorical
choice, `uniform`/`loguniform`/`randint` (inclusive bounds) are Optuna's float, log-float and int
distributions, `choice` a categorical; a list of sub-grids becomes a conditional space (first the
sub-grid, then its parameters, named per sub-grid so that Optuna's distributions never clash).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from sklearn.model_selection._search import BaseSearchCV

from ..spec.config import ParamValues
from ..spec.space import grid_values
from .pruning import BatchedSearch, Outcome

SUBSPACE = "subspace"


def suggest(trial, grids: list[dict[str, ParamValues]]) -> dict[str, Any]:
    """The candidate's parameters (scikeras names), asked of `trial` in the config's space."""
    index = trial.suggest_categorical(SUBSPACE, list(range(len(grids)))) if len(grids) > 1 else 0
    prefix = f"{index}:" if len(grids) > 1 else ""
    params = {}
    for name, spec in grids[index].items():
        key = prefix + name
        if isinstance(spec, dict) and spec["distribution"] != "choice":
            low, high = spec["low"], spec["high"]
            if spec["distribution"] == "randint":
                params[name] = trial.suggest_int(key, low, high)
            else:
                params[name] = trial.suggest_float(key, low, high, log=spec["distribution"] == "loguniform")
            continue
        values = grid_values(spec["values"] if isinstance(spec, dict) else spec)
        if all(v is None or isinstance(v, (bool, int, float, str)) for v in values):
            params[name] = trial.suggest_categorical(key, values)
        else:  # e.g. layer widths (tuples): Optuna's categorical takes plain values only, so their position
            params[name] = values[trial.suggest_categorical(key + "#", list(range(len(values))))]
    return params


class TPESearchCV(BatchedSearch, BaseSearchCV):
    """A scikit-learn search over `n_trials` candidates asked of Optuna's TPE, `batch` at a time
    (with a `ladder`, pruned at its rungs; with a `budget`, no batch that an average one would overrun)."""

    def __init__(self, estimator, grids, *, n_trials=20, batch=8, random_state=None, scoring=None, n_jobs=None,
                 refit=True, cv=None, verbose=0, pre_dispatch="2*n_jobs", error_score=math.nan,
                 return_train_score=False):
        super().__init__(estimator=estimator, scoring=scoring, n_jobs=n_jobs, refit=refit, cv=cv, verbose=verbose,
                         pre_dispatch=pre_dispatch, error_score=error_score, return_train_score=return_train_score)
        self.grids, self.n_trials, self.batch, self.random_state = grids, n_trials, batch, random_state

    def _run_search(self, evaluate_candidates, *, callback_ctx=None):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():  # multivariate and constant_liar are "experimental" in Optuna's terms
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=self.random_state, multivariate=True, constant_liar=True)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        asked = batch = 0
        while asked < self.n_trials and (self.budget is None or self.budget.allows(batch)):
            trials = [study.ask() for _ in range(min(self.batch, self.n_trials - asked))]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                candidates = [suggest(trial, self.grids) for trial in trials]
            for trial, outcome in zip(trials, self.evaluate_batch(evaluate_candidates, candidates)):
                tell(study, trial, outcome)
            asked, batch = asked + len(trials), batch + 1


def tell(study, trial, outcome: Outcome) -> None:
    """Tell Optuna a trial's outcome: its score at each rung as intermediate values (what TPE
    ranks pruned trials by), then its final score, or pruned, or failed (no score)."""
    import optuna

    for epochs, score in outcome.reports:
        if math.isfinite(score):
            trial.report(score, step=epochs)
    if not math.isfinite(outcome.score):
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    elif outcome.pruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, outcome.score)
