"""The fused engine at the search level: which pending fits train together, and training one job.

A *job* is a group of candidates on one or more folds. Candidates that may differ in the
network (initializer, widths, activation, dropout, L1/L2), the optimizer's settings (learning
rate, decay, momentum, Nesterov, rho, betas, epsilon), the epoch schedule, the number of epochs
and early stopping, and share everything else (network depth, optimizer kind, batch size, seed),
form a group, trained as towers of one program (see `pipeline.training.towers`): one tower per
(candidate, fold), at most `max_towers` at a time. Folds share a program when they have the
same classes and number of batches per epoch (a k-fold split's training sets differ by at most
a sample: each fold is fed in its solo fit's order, a shorter one padded and weighted, see
`pipeline.training.fold_batches`). Every other fit is a job of one, trained alone. A tower
with a checkpoint saves its best weights as its solo fit's own file.

Halving over epochs (`keep_states`): every fused tower's state when its epochs end comes back
with the records (`Trained.states`), and a candidate of a later round whose folds all have a
state after fewer epochs (`pipeline.tuning.continuations`) continues from there, in a program
of towers continued from the same epoch.

`train_job` returns one `FitRecord` per candidate, the same record however it trained. It
raises only infrastructure errors (memory, disk, the stop request): the candidate's own
failures are records. If a fused program fails as a whole for a candidate's reason, each
candidate trains alone, so that every failure is recorded with its own reason.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..spec.vocabulary import CHECKPOINT, EARLY_STOPPING, NETWORK, OPTIMIZER, SCHEDULE
from ..training.single import divergence
from .continuations import TowerStates, continuation_key
from .records import FitRecord, candidate_key, fold_key, hyperparameters, is_infrastructure, params_key


@dataclass(frozen=True)
class Fold:
    """One cross-validation split: sample indices and the fold's key in the store."""

    train: np.ndarray
    test: np.ndarray
    key: str


@dataclass
class Job:
    """Candidates (estimators with their parameters set, no context or store) on folds: one fit
    per (fold, candidate), fold-major. `starts` has each fit's state to continue from, by
    (candidate key, fold key), for all fits or none; `keep_states` asks for the states at the end."""

    keys: list[str]
    candidates: list[Any]
    folds: list[Fold]
    starts: dict[tuple[str, str], Any] = field(default_factory=dict)
    keep_states: bool = False

    @property
    def size(self) -> int:
        return len(self.candidates) * len(self.folds)

    def fits(self) -> list[tuple[Fold, str, Any]]:
        return [(fold, key, candidate) for fold in self.folds for key, candidate in zip(self.keys, self.candidates)]

    def cost(self) -> float:
        """Estimated time to train, in milliseconds on this machine: a program's tracing (~3 s)
        and its steps, each about 3 ms plus 1 ms per tower and 128 samples in a batch (fitted to
        two runs of `benchmarks/fused_profile.py` on earlier code, one thread, batches of 128:
        3.3-3.7 ms for one tower, 9.7-12.0 ms for 8, 20.8-25.9 ms for 24; later runs measured
        3.1, 9.3 and 20.6 ms on 5dcebbd and 2.2, 5.9 and 15.4 ms in BENCHMARKS.md, about the same
        proportions)."""
        from ..training.fold_batches import steps_per_epoch

        first = self.candidates[0]
        start = next(iter(self.starts.values())).epochs if self.starts else 0
        steps = steps_per_epoch(len(self.folds[0].train), first.validation_split or 0.0, first.batch_size)
        epochs = max(candidate.epochs for candidate in self.candidates) - start
        return 3000 + steps * epochs * (3 + self.size * first.batch_size / 128)


@dataclass
class Trained:
    """A job's outcome: one record per fit, and (with `keep_states`) the fused towers' states by
    (continuation key, fold key)."""

    records: list[FitRecord]
    states: dict[tuple[str, str], Any] = field(default_factory=dict)


# Per-tower values: the network's fields (but depth), the optimizer's settings (but its kind),
# the epoch schedule, the epochs (a shared prefix), early stopping and checkpoints, and a pbt
# member's lineage (`member`, which trains nothing); the rest (batch size, seed, ...) is shared.
PER_TOWER_PREFIXES = (f"{NETWORK.prefix}__", f"{OPTIMIZER.prefix}__", SCHEDULE.prefix, EARLY_STOPPING.prefix,
                      CHECKPOINT.prefix)


def group_key(params: dict[str, Any]) -> str | None:
    """What candidates must share to train as one program, or None when this candidate must
    train alone (decay with a schedule fails alone)."""
    if OPTIMIZER.build(params).decay and SCHEDULE.build(params).name != "none":
        return None
    plain = hyperparameters(params)
    shared = {k: v for k, v in plain.items() if not k.startswith(PER_TOWER_PREFIXES) and k not in ("epochs", "member")}
    shared["depth"] = len(NETWORK.build(params).hidden_layers)
    return params_key(shared)


def plan_jobs(estimator, candidate_params: list[dict[str, Any]], cv, X, y, store, max_towers: int,
              states: TowerStates | None = None, trainers: int = 1) -> list[Job]:
    """The jobs for every fit of these candidates on `cv`'s folds that `store` has no record of.

    A group's candidates with the same pending folds that can share a program (`_alike_folds`)
    share jobs of at most `max_towers` fits. A candidate listed twice (a random search
    drawing the same point) trains once. With `max_towers` 1 every fit is a job of its own.
    With `states` (halving over epochs), fused jobs keep their towers' states, and candidates
    that can continue from states of the same epoch share jobs of their own. With several
    `trainers` (processes that train at once), the costliest jobs are split by their candidates
    (`_split_for`), so that every trainer has work and none waits long for another."""
    from sklearn.base import clone

    groups: dict[tuple[str, Any], list[tuple[str, Any]]] = {}  # ("fused", key) or ("alone", number)
    seen = set()
    for number, params in enumerate(candidate_params):
        candidate = clone(estimator).set_params(**params, context=None, replay_from=None)
        settings = candidate.get_params()
        key = candidate_key(settings)
        if key in seen:
            continue
        seen.add(key)
        group = group_key(settings) if max_towers > 1 else None
        groups.setdefault(("alone", number) if group is None else ("fused", group), []).append((key, candidate))
    folds = [Fold(train, test, fold_key(X[train], y[train])) for train, test in cv.split(X, y)]
    jobs = []
    for (kind, _), members in groups.items():
        for alike in _alike_folds(folds, y, members[0][1]).values():
            by_pending: dict[tuple, list[tuple[str, Any]]] = {}
            starts: dict[tuple[str, str], Any] = {}
            for key, candidate in members:
                pending = tuple(fold.key for fold in alike if store.lookup(key, fold.key) is None)
                found = _starts(candidate, key, pending, states) if kind == "fused" and states is not None else {}
                starts.update(found)
                if pending:
                    start_epochs = next(iter(found.values())).epochs if found else 0
                    by_pending.setdefault((pending, start_epochs), []).append((key, candidate))
            for (pending, _), candidates in by_pending.items():
                for job in _chunks([fold for fold in alike if fold.key in pending], candidates,
                                   max_towers if kind == "fused" else 1):
                    job.keep_states = kind == "fused" and states is not None
                    job.starts = {(key, fold.key): starts[key, fold.key] for fold, key, _ in job.fits()
                                  if (key, fold.key) in starts}
                    jobs.append(job)
    return _split_for(trainers, jobs)


def _split_for(trainers: int, jobs: list[Job]) -> list[Job]:
    """`jobs` with the costliest fused job halved until every trainer has a job, then as long as
    that shortens the estimated time until the last of `trainers` processes is done. A job of
    several candidates is halved by its candidates (the shorter-trained first: candidates listed
    by epochs train in jobs of their own length), a job of one candidate by its folds (a pruned
    search's survivor, trained on its own for the most epochs). Towers are independent, so a
    split job trains the same fits."""
    while trainers > 1:
        biggest = max((job for job in jobs if job.size > 1), key=Job.cost, default=None)
        if biggest is None:
            return jobs
        split = [part for job in jobs for part in (_halves(job) if job is biggest else [job])]
        if len(split) > trainers and makespan(split, trainers) >= makespan(jobs, trainers):
            return jobs
        jobs = split
    return jobs


def _halves(job: Job) -> list[Job]:
    if len(job.candidates) == 1:
        half = len(job.folds) // 2
        return [Job(job.keys, job.candidates, folds, keep_states=job.keep_states,
                    starts={(key, fold): state for (key, fold), state in job.starts.items()
                            if fold in {each.key for each in folds}})
                for folds in (job.folds[:half], job.folds[half:])]
    order = sorted(range(len(job.candidates)), key=lambda i: job.candidates[i].epochs)
    return [_part(job, half) for half in (order[:len(order) // 2], order[len(order) // 2:])]


def assign(jobs: list[Job], trainers: int) -> list[int]:
    """Each job's trainer: the costliest job first, each to the trainer with the least work so far."""
    load, chosen = [0.0] * trainers, [0] * len(jobs)
    for number in sorted(range(len(jobs)), key=lambda n: jobs[n].cost(), reverse=True):
        chosen[number] = load.index(min(load))
        load[chosen[number]] += jobs[number].cost()
    return chosen


def makespan(jobs: list[Job], trainers: int) -> float:
    """The estimated time until the last trainer is done, jobs assigned by `assign`."""
    load = [0.0] * trainers
    for job, trainer in zip(jobs, assign(jobs, trainers)):
        load[trainer] += job.cost()
    return max(load)


def _part(job: Job, members: list[int]) -> Job:
    keys = [job.keys[i] for i in members]
    return Job(keys, [job.candidates[i] for i in members], job.folds, keep_states=job.keep_states,
               starts={(key, fold): state for (key, fold), state in job.starts.items() if key in keys})


def _alike_folds(folds: list[Fold], y, candidate) -> dict[tuple, list[Fold]]:
    """The folds that can share a program: the same number of batches per epoch (at this
    candidate's batch size and validation split) and the same classes."""
    from ..training.fold_batches import steps_per_epoch

    alike: dict[tuple, list[Fold]] = {}
    for fold in folds:
        classes = tuple(np.unique(y[fold.train])) if candidate.task == "classification" else ()
        steps = steps_per_epoch(len(fold.train), candidate.validation_split or 0.0, candidate.batch_size)
        alike.setdefault((steps, classes), []).append(fold)
    return alike


def _starts(candidate, key: str, folds: tuple[str, ...], states: TowerStates) -> dict[tuple[str, str], Any]:
    """The states this candidate's pending folds continue from: one per fold, all after the same
    number of epochs (fewer than the candidate's), or none (it trains from the start)."""
    settings = candidate.get_params()
    found = {fold: states.latest(continuation_key(settings), fold, before=candidate.epochs) for fold in folds}
    if not folds or any(state is None for state in found.values()) or \
            len({state.epochs for state in found.values()}) != 1:
        return {}
    return {(key, fold): state for fold, state in found.items()}


def _chunks(folds: list[Fold], candidates: list[tuple[str, Any]], max_towers: int) -> list[Job]:
    """Jobs of at most `max_towers` fits: all folds with as many candidates as fit (or fewer folds),
    the candidates spread evenly (33 in jobs of up to 16: 11, 11, 11, not 16, 16, 1; a job of
    one would train alone)."""
    per_job_folds = min(len(folds), max_towers)
    n_jobs = math.ceil(len(candidates) / max(1, max_towers // per_job_folds))
    per_job_candidates = math.ceil(len(candidates) / n_jobs)
    return [Job([k for k, _ in chunk], [c for _, c in chunk], folds[f:f + per_job_folds])
            for f in range(0, len(folds), per_job_folds)
            for chunk in (candidates[i:i + per_job_candidates] for i in range(0, len(candidates), per_job_candidates))]


def train_job(job: Job, X, y, scorer, context) -> Trained:
    """Train one job's fits (as towers of one program when there are several, or when states are
    to be kept or continued from: a program of one tower is the fit trained alone)."""
    if job.size > 1 or job.starts or job.keep_states:
        try:
            return _train_fused(job, X, y, scorer, context)
        except Exception as error:
            if is_infrastructure(error):
                raise
    return Trained([train_alone(key, candidate, fold.key, X[fold.train], y[fold.train], X[fold.test], y[fold.test],
                                scorer, context)
                    for fold, key, candidate in job.fits()])


def _train_fused(job: Job, X, y, scorer, context) -> Trained:
    """One program, a tower per (fold, candidate): each fold's samples side by side as the input,
    gathered from `X` by row number, and every tower scored from one prediction on all of `X`."""
    from ..training.towers import fit_towers
    from .estimator import checkpoint_path

    fits = job.fits()
    each = [candidate.get_params() for _, _, candidate in fits]
    started = time.perf_counter()
    fitted = fit_towers(
        [NETWORK.build(p) for p in each], X, y, folds=[fold.train for fold in job.folds],
        optimizers=[OPTIMIZER.build(p) for p in each], schedules=[SCHEDULE.build(p) for p in each],
        epochs=[candidate.epochs for _, _, candidate in fits], early_stopping=[EARLY_STOPPING.build(p) for p in each],
        score_on=(X,), checkpoints=[(CHECKPOINT.build(p), checkpoint_path(candidate.checkpoint_dir, key, fold.key))
                                    if candidate.checkpoint else None for p, (fold, key, candidate) in zip(each, fits)],
        start=[job.starts[key, fold.key] for fold, key, _ in fits] if job.starts else None, keep_states=job.keep_states,
        **shared_settings(job.candidates[0], context),
    )
    fit_time = (time.perf_counter() - started) / job.size
    fused = {"group": params_key({"folds": [fold.key for fold in job.folds], "members": job.keys}),
             "towers": job.size}
    if job.starts:  # the epochs trained before, in an earlier round
        fused["continued_from"] = next(iter(job.starts.values())).epochs
    records = []
    for tower, (fold, key, candidate) in enumerate(fits):
        history = fitted.histories[tower]
        diverged = divergence(history.get("loss", []))
        view = fitted.view(tower, of=X)  # scored on row numbers: every tower predicted X once
        scores = {} if diverged else _scores(scorer, view, fold.train, y[fold.train], fold.test, y[fold.test])
        records.append(FitRecord.of(key, fold.key, hyperparameters(candidate.get_params()), fit_time=fit_time,
                                    history=history, fused=fused,
                                    failure=("diverged", f"TrainingDiverged: {diverged}") if diverged else None,
                                    **scores))
    states = {(continuation_key(each[tower]), fits[tower][0].key): state for tower, state in fitted.states.items()}
    return Trained(records, states)


def shared_settings(candidate, context) -> dict[str, Any]:
    """`fit_towers`' settings that a program's towers share, as `candidate`'s solo fit has them:
    task, batch size, validation split, shuffling, seed and how it seeds, the stop request and
    the context's compiled programs."""
    from ..training.callbacks import StopOnRequest
    from .estimator import seeding

    return dict(task=candidate.task, batch_size=candidate.batch_size, validation_split=candidate.validation_split or 0.0,
                shuffle=candidate.shuffle, steps_per_execution=candidate.steps_per_execution,
                seed=candidate.random_state, seeding=seeding, callbacks=[StopOnRequest(context.stop)],
                cache=context.models)


def train_alone(key: str, candidate, fold: str, X_train, y_train, X_test, y_test, scorer, context) -> FitRecord:
    """Train one candidate by itself and return its record (a failure record if its settings fail it)."""
    from sklearn.base import clone

    from .estimator import CandidateFailed

    estimator = clone(candidate).set_params(context=context, replay_from=None)
    started = time.perf_counter()
    try:
        estimator.fit(X_train, y_train)
    except CandidateFailed as failure:
        return FitRecord.of(key, fold, hyperparameters(candidate.get_params()), fit_time=time.perf_counter() - started,
                            failure=(failure.kind, failure.reason))
    fit_time = time.perf_counter() - started
    return FitRecord.of(key, fold, hyperparameters(candidate.get_params()), fit_time=fit_time,
                        history=estimator.history_,
                        **_scores(scorer, _scoring_view(estimator), X_train, y_train, X_test, y_test))


def _scoring_view(estimator):
    """The fitted estimator for scoring, predicting in one call into the compiled model: the same
    outputs as scikeras' `predict`, without building a tf.data pipeline for every call (which
    cost more than a small fit's training)."""
    from ..training.towers import fitted_view

    model = estimator.model_
    return fitted_view(lambda X: np.asarray(model.predict_on_batch(np.asarray(X, dtype="float32"))),
                       estimator.task, getattr(estimator, "classes_", None))


def _scores(scorer, fitted, X_train, y_train, X_test, y_test) -> dict[str, dict[str, float]]:
    return {"test_scores": scorer.scores(fitted, X_test, y_test),
            "train_scores": scorer.scores(fitted, X_train, y_train) if scorer.train_scores else {}}
