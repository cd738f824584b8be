"""`search.strategy: pbt`: population-based training (Jaderberg et al. 2017) on the fused engine.

A population of `population` members is drawn from the space (`search.params`, as for the
random strategy). The members train `interval` epochs at a time, all of them (on every fold) as
towers of the programs of one scikit-learn `evaluate_candidates` call per interval (rows with
`iter` = interval, `n_resources` = epochs, as halving writes them). After each interval the
members are ranked by mean CV score; each of the bottom `fraction` takes over a member of the top
`fraction`: its weights, optimizer state and Dropout streams on every fold (the tower states
the engine keeps, copied in `continuations/`; fold i's state goes to fold i, so no fold sees
another's held-out samples), and its hyperparameters, perturbed (`perturb`). Every member then
continues from its state (`pipeline.tuning.continuations`): a program per interval, not masks
inside one running program.

A member is a candidate with a `member` parameter, "m<number>.<generation>": the generation
counts its take-overs, so the key of every fit names the lineage its weights come from. All
choices come from one generator seeded with the config's seed and the scores, so a resumed
search (scores replayed from the journal) makes the same choices as an uninterrupted one.

The final model is the winner's *schedule* refitted (`refit_schedule`): its lineage's
hyperparameters interval by interval, trained on the whole training split from the start.
Not the winner's towers as trained: each was trained on one fold's training rows only, and the
k of them are k models, none of them the one to save.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import check_cv
from sklearn.model_selection._search import BaseSearchCV

from ..core.errors import PipelineError
from ..spec.config import ParamValues, PBTConfig
from ..spec.space import scikit_learn_values
from ..spec.vocabulary import NETWORK, OPTIMIZER, SCHEDULE
from .records import plain_value


def draw(spec: ParamValues, rng: np.random.Generator) -> Any:
    """A value of a space's parameter: from its distribution or uniformly from its list, as the
    random strategy sees them (`scikit_learn_values`)."""
    values = scikit_learn_values(spec)
    if hasattr(values, "rvs"):
        return np.asarray(values.rvs(random_state=rng)).item()  # a plain float or int
    return values[int(rng.integers(len(values)))]


def perturb(value: Any, spec: ParamValues, pbt: PBTConfig, rng: np.random.Generator) -> Any:
    """PBT's explore step for one value: drawn anew with probability `resample`; otherwise times
    one of `factors`, within the distribution's bounds, or the next value up or down its list."""
    if rng.uniform() < pbt.resample:
        return draw(spec, rng)
    if isinstance(spec, dict) and spec["distribution"] != "choice":
        moved = min(max(value * pbt.factors[int(rng.integers(2))], spec["low"]), spec["high"])
        return int(round(moved)) if spec["distribution"] == "randint" else float(moved)
    values = scikit_learn_values(spec)
    index = values.index(value) + (1 if rng.uniform() < 0.5 else -1)
    return values[min(max(index, 0), len(values) - 1)]


@dataclass
class Member:
    """One member of the population: its sub-grid of the space, its current hyperparameters,
    its take-overs so far, and per interval what it trained with and scored."""

    number: int
    grid: int
    params: dict[str, Any]
    generation: int = 0
    # per interval: {"epochs", "score", "params" (the perturbed ones), "from" (the member taken over, or None)}
    steps: list[dict[str, Any]] = field(default_factory=list)
    # the lineage's hyperparameters: (epochs at the interval's end, params) for every interval trained
    schedule: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"m{self.number}.{self.generation}"

    def candidate(self, epochs: int) -> dict[str, Any]:
        return {**self.params, "epochs": epochs, "member": self.tag}

    def take_over(self, leader: "Member", params: dict[str, Any]) -> None:
        self.grid, self.params, self.generation = leader.grid, params, self.generation + 1
        self.schedule = list(leader.schedule)


class PBTSearchCV(BaseSearchCV):
    """A scikit-learn search whose candidates are a population trained `pbt.interval` epochs at a
    time up to `epochs`, exploiting and exploring between intervals (see the module's docstring).
    `members_` holds the population as it ended. The hooks `kept_states` and `copy_states`
    reach the training session's tower states (`pipeline.tuning.session.TrainFirst`); without a
    session (the dry run's count) every state counts as kept and nothing is copied."""

    def __init__(self, estimator, grids, *, pbt: PBTConfig, epochs: int, perturbed=(), random_state=None,
                 scoring=None, n_jobs=None, refit=True, cv=None, verbose=0, pre_dispatch="2*n_jobs",
                 error_score=math.nan, return_train_score=False):
        super().__init__(estimator=estimator, scoring=scoring, n_jobs=n_jobs, refit=refit, cv=cv, verbose=verbose,
                         pre_dispatch=pre_dispatch, error_score=error_score, return_train_score=return_train_score)
        self.grids, self.pbt, self.epochs, self.perturbed = grids, pbt, epochs, perturbed
        self.random_state = random_state

    def kept_states(self, params: dict[str, Any], epochs: int) -> int | None:
        """How many folds of this candidate have a state after `epochs` (None: not known)."""
        return None

    def copy_states(self, source: dict[str, Any], target: dict[str, Any], epochs: int) -> None:
        """Give candidate `target` the states of candidate `source` after `epochs`."""

    def _run_search(self, evaluate_candidates, *, callback_ctx=None):
        rng = np.random.default_rng(self.random_state)
        members = []
        for number in range(self.pbt.population):
            grid = int(rng.integers(len(self.grids)))
            members.append(Member(number, grid, {name: draw(spec, rng) for name, spec in self.grids[grid].items()}))
        ends = self.pbt.ends(self.epochs)
        self.members_, leaders = members, {}
        for step, end in enumerate(ends):
            candidates = [member.candidate(end) for member in members]
            results = evaluate_candidates(candidates, more_results={"iter": [step] * len(members),
                                                                    "n_resources": [end] * len(members)})
            scores = [float(score) for score in results["mean_test_score"][-len(members):]]
            for member, score in zip(members, scores):
                member.schedule.append((end, dict(member.params)))
                member.steps.append({"epochs": end, "score": score, "from": leaders.get(member.number),
                                     "params": {name: member.params[name] for name in self.perturbed
                                                if name in member.params}})
            if end == ends[-1]:
                break
            leaders = self._exploit_and_explore(members, scores, end, rng)
            if leaders is None:
                break  # no member can lead: every one failed

    def _exploit_and_explore(self, members: list[Member], scores: list[float], end: int,
                             rng: np.random.Generator) -> dict[int, int] | None:
        """The bottom `fraction` (and any member without a score or a state to continue from) take
        over a member of the top `fraction`, perturbed; returns who took over whom, or None when
        no member has a score and states."""
        folds = check_cv(self.cv).get_n_splits()
        order = sorted(range(len(members)), key=lambda i: scores[i] if math.isfinite(scores[i]) else -math.inf,
                       reverse=True)
        can_lead = [i for i in order if math.isfinite(scores[i])
                    and self.kept_states(members[i].candidate(end), end) in (None, folds)]
        count = max(1, int(len(members) * self.pbt.fraction))
        top = can_lead[:count]
        if not top:
            return None
        replaced = [i for i in order if i not in top and (i in order[-count:] or i not in can_lead)]
        taken = {}
        for i in replaced:
            leader, member = members[top[int(rng.integers(len(top)))]], members[i]
            source = leader.candidate(end)
            params = dict(leader.params)
            for name in self.perturbed:
                if name in params:
                    params[name] = perturb(params[name], self.grids[leader.grid][name], self.pbt, rng)
            member.take_over(leader, params)
            self.copy_states(source, member.candidate(end), end)
            taken[member.number] = leader.number
        return taken

    def schedule_of(self, tag: str) -> list[tuple[int, dict[str, Any]]]:
        """The hyperparameters, interval by interval, of the member that ended as `tag`."""
        return next(member.schedule for member in self.members_ if member.tag == tag)


def population_summary(search: PBTSearchCV, winner: str) -> dict[str, Any]:
    """run.json's `pbt`: the settings, every member's intervals (score, perturbed values, whom
    it took over) and the winner's schedule."""
    pbt = search.pbt
    return {
        "population": pbt.population, "interval": pbt.interval, "fraction": pbt.fraction,
        "perturbed": list(search.perturbed), "winner": winner,
        "members": [{"member": member.number, "ended_as": member.tag,
                     "steps": [{**step, "params": {k: plain_value(k, v) for k, v in step["params"].items()}}
                               for step in member.steps]} for member in search.members_],
        "schedule": [{"epochs": end, **{k: plain_value(k, v) for k, v in params.items() if k in search.perturbed}}
                     for end, params in search.schedule_of(winner)],
    }


def refit_schedule(estimator, schedule: list[tuple[int, dict[str, Any]]], X, y, context):
    """`estimator` trained on (X, y) with the hyperparameters of `schedule` interval by interval
    (until the epochs each entry names), as one tower of the fused engine continued from its
    state at every change: the winner's lineage trained again from the start, on all the data.
    Returns the estimator holding the trained weights and their history."""
    from sklearn.base import clone

    from ..training.single import divergence
    from ..training.towers import fit_towers
    from .engine import shared_settings

    state = None
    for end, params in schedule:
        candidate = clone(estimator).set_params(**params, epochs=end, replay_from=None)
        settings = candidate.get_params()
        fitted = fit_towers([NETWORK.build(settings)], X, y, optimizers=[OPTIMIZER.build(settings)],
                            schedules=[SCHEDULE.build(settings)], epochs=end, start=[state] if state else None,
                            keep_states=True, **shared_settings(candidate, context))
        state = fitted.states[0]
        diverged = divergence(state.history.get("loss", []))
        if diverged:
            raise PipelineError(f"the best member's schedule diverged when refitted on the whole training split "
                                f"({diverged}); see results.csv and change the search space")
    return candidate.holding(X, y, state.weights, state.history)
