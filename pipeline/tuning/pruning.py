"""Pruning (`search.pruning`): asynchronous successive halving over epochs, a batch of candidates
at a time, for the TPE and random strategies; and the CPU budget (`search.budget_minutes`).

A batch's candidates are scored after the first rung's epochs (`PruningConfig.rungs`); the
ones whose mean CV score is in the top 1/reduction of every score seen at that rung so far (this
batch's and earlier batches', at least one) go on to the next rung, and so on
up to `training.epochs`; the others are pruned where they stand. This is ASHA's promotion rule
(Li et al. 2020; Optuna's `SuccessiveHalvingPruner`), decided per batch rather than per trial,
so that a decision never depends on which fits happened to finish first: a resumed search,
replaying the journal's scores, decides the same.

Each rung is one `evaluate_candidates` call with the candidates' `epochs` set to the rung (rows
of `cv_results_` with `iter` = rung, `n_resources` = epochs, as scikit-learn's halving writes
them); the session continues a fused tower from its state at the rung before
(`pipeline.tuning.continuations`), so a survivor trains only its new epochs and gives the same
scores as a fit of that many epochs from scratch. The program of a rung holds only the
survivors: pruning shrinks it at every rung.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence


@dataclass
class Outcome:
    """One candidate of a batch: its last mean CV score (NaN: failed), and with pruning the
    (epochs, mean CV score) of each rung it reached and whether it was pruned."""

    score: float = math.nan
    reports: list[tuple[int, float]] = field(default_factory=list)
    pruned: bool = False


class Ladder:
    """The rungs and every score seen at each, across the batches of one search."""

    def __init__(self, rungs: Sequence[int], reduction: int):
        self.rungs, self.reduction = list(rungs), reduction
        self.seen: list[list[float]] = [[] for _ in self.rungs]

    def climb(self, evaluate: Callable[..., dict], candidates: list[dict[str, Any]]) -> list[Outcome]:
        """Score a batch at the rungs, pruning as it goes: `evaluate` is scikit-learn's
        `evaluate_candidates` (or a wrapper of it); returns each candidate's outcome."""
        outcomes = [Outcome() for _ in candidates]
        alive = list(range(len(candidates)))
        for rung, epochs in enumerate(self.rungs):
            if not alive:
                break
            results = evaluate([{**candidates[i], "epochs": epochs} for i in alive],
                               more_results={"iter": [rung] * len(alive), "n_resources": [epochs] * len(alive)})
            scores = [float(s) for s in results["mean_test_score"][-len(alive):]]
            for i, score in zip(alive, scores):
                outcomes[i].score = score
                outcomes[i].reports.append((epochs, score))
            if rung == len(self.rungs) - 1:
                break
            promoted = {alive[j] for j in self.promote(rung, scores)}
            for i in alive:
                outcomes[i].pruned = i not in promoted
            alive = [i for i in alive if i in promoted]
        return outcomes

    def promote(self, rung: int, scores: list[float]) -> list[int]:
        """Which of this batch's `scores` at `rung` go on: those at least the k-th best of every
        score seen at the rung, k = seen // reduction (at least 1); failed (NaN) never."""
        self.seen[rung].extend(s for s in scores if math.isfinite(s))
        if not self.seen[rung]:
            return []
        k = max(1, len(self.seen[rung]) // self.reduction)
        bar = sorted(self.seen[rung], reverse=True)[k - 1]
        return [j for j, s in enumerate(scores) if math.isfinite(s) and s >= bar]


class BatchedSearch:
    """What the TPE and pruned random searches share: a ladder (or none: each candidate trains
    its epochs in one go), a budget (or none) consulted before each batch, and a hook called
    after each batch (the session drops the states the batch kept for its rungs)."""

    ladder: Ladder | None = None
    budget: "CpuBudget | None" = None

    def evaluate_batch(self, evaluate: Callable[..., dict], candidates: list[dict[str, Any]]) -> list[Outcome]:
        if self.ladder is not None:
            outcomes = self.ladder.climb(evaluate, candidates)
        else:
            scores = evaluate(candidates)["mean_test_score"][-len(candidates):]
            outcomes = [Outcome(float(score)) for score in scores]
        self.batch_done()
        return outcomes

    def batch_done(self) -> None:
        """Called after every batch; nothing to do unless a mixin keeps something per batch."""


class PrunedRandom(BatchedSearch):
    """Mixin for scikit-learn's RandomizedSearchCV: its sampled candidates go through the ladder
    `batch` at a time instead of in one call."""

    batch: int = 8

    def _run_search(self, evaluate_candidates, *, callback_ctx=None):
        def in_batches(candidate_params, cv=None, more_results=None, **kwargs):
            candidates = list(candidate_params)
            for start in range(0, len(candidates), self.batch):
                self.evaluate_batch(evaluate_candidates, candidates[start:start + self.batch])

        super()._run_search(in_batches, **({"callback_ctx": callback_ctx} if callback_ctx is not None else {}))


def process_tree_cpu(root) -> float:
    """CPU seconds of the psutil process `root` and its descendants, living and ended (ended
    ones count once their parent has waited for them, as the search waits for its workers)."""
    import psutil

    times = root.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in root.children(recursive=True):
        try:
            child_times = child.cpu_times()
        except psutil.Error:  # ended since it was listed
            continue
        total += child_times.user + child_times.system
    return total


class CpuBudget:
    """`search.budget_minutes`: before each batch, whether the search may start it: only if the
    CPU time spent so far plus what a batch has cost on average stays within the budget (the
    first batch always starts), so that a search ends within its budget but for the refit.

    What counts is the CPU time of the search's root process (the one the user started: the
    supervisor of recycled worker processes, or the search itself) and all its descendants,
    imports and replaced workers included. The CPU spent at the first decision and at the last,
    and the batches started, are kept in run.json with the root they were measured in: a
    replaced worker of the same root goes on counting from the root's clock; a resumed search (a
    new root) adds its own tree's time to what the killed one had spent at its last decision, and
    starts again every batch the killed one had started (their fits replay from the journal)."""

    def __init__(self, minutes: float, run_dir: Path, root_pid: int | None = None):
        import psutil

        from ..core.files import read_json

        self.limit_s, self.run_dir = minutes * 60, Path(run_dir)
        self.root = psutil.Process(root_pid)
        self.root_id = f"{self.root.pid}@{self.root.create_time():.2f}"
        kept = read_json(self.run_dir / "run.json").get("budget") or {}
        self.started, self.first_s = kept.get("batches", 0), kept.get("first_cpu_s")
        self.base = kept.get("cpu_s", 0.0) - (kept.get("root_cpu_s", 0.0) if kept.get("root") == self.root_id else 0.0)

    def spent(self) -> float:
        return self.base + process_tree_cpu(self.root)

    def allows(self, batch: int) -> bool:
        """Whether batch number `batch` (0, 1, ...) may start."""
        from .lifecycle import update_run

        if batch < self.started:
            return True
        root_cpu = process_tree_cpu(self.root)
        spent = self.base + root_cpu
        if self.first_s is None:
            self.first_s = spent
        per_batch = (spent - self.first_s) / self.started if self.started else 0.0
        exhausted = spent + per_batch > self.limit_s
        if not exhausted:
            self.started = batch + 1
        update_run(self.run_dir, budget={
            "cpu_s": round(spent, 2), "batches": self.started, "exhausted": exhausted, "first_cpu_s": self.first_s,
            "per_batch_cpu_s": round(per_batch, 2), "root": self.root_id, "root_cpu_s": round(root_cpu, 2)})
        return not exhausted
