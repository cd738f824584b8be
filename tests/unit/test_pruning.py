"""search.pruning (rungs, ASHA's promotion rule per batch, what Optuna is told) and
search.budget_minutes (the CPU budget and what a resumed search keeps of it)."""

from __future__ import annotations

import json
import math
import re
import time

import numpy as np
import pandas as pd
import pytest
from conftest import write_config

from pipeline.core.errors import PipelineError
from pipeline.review.tables import pruning_sentence, pruning_summary
from pipeline.spec.config import PruningConfig, load_config
from pipeline.tuning.pruning import CpuBudget, Ladder, Outcome, PrunedRandom


@pytest.mark.parametrize("min_epochs, reduction, epochs, rungs", [
    (1, 3, 9, [1, 3, 9]), (2, 3, 20, [2, 6, 18, 20]), (4, 2, 16, [4, 8, 16]), (5, 3, 6, [5, 6])])
def test_rungs_grow_by_the_reduction_and_end_at_the_last_epoch(min_epochs, reduction, epochs, rungs):
    assert PruningConfig(min_epochs=min_epochs, reduction=reduction).rungs(epochs) == rungs


def test_promotion_is_the_top_fraction_of_every_score_seen_at_the_rung():
    ladder = Ladder([1, 3, 9], reduction=3)
    # first batch: 6 scores (a failed fit is no score), k = 6 // 3 = 2: the two best go on
    assert ladder.promote(0, [0.5, 0.9, math.nan, 0.7, 0.8, 0.1, 0.3]) == [1, 4]
    # second batch: 12 seen, k = 4: the bar is the fourth best of all, 0.8
    assert ladder.promote(0, [0.85, 0.6, 0.95, 0.2, 0.3, 0.4]) == [0, 2]
    assert ladder.seen[0] == [0.5, 0.9, 0.7, 0.8, 0.1, 0.3, 0.85, 0.6, 0.95, 0.2, 0.3, 0.4]
    # fewer scores than the reduction: the best goes on (k is at least 1)
    assert ladder.promote(1, [0.2, 0.4]) == [1]
    assert ladder.promote(2, [math.nan]) == []


class _Evaluations:
    """Stands for `evaluate_candidates`: the score is the candidate's `quality` x its epochs
    (NaN for quality None); keeps each call's candidates and more_results, and cv_results' growing
    mean_test_score."""

    def __init__(self):
        self.calls, self.scores = [], []

    def __call__(self, candidates, more_results=None):
        self.calls.append(([dict(c) for c in candidates], more_results))
        self.scores += [math.nan if c["quality"] is None else c["quality"] * c["epochs"] for c in candidates]
        return {"mean_test_score": np.array(self.scores)}


def test_a_batch_climbs_the_rungs_and_the_rest_is_pruned_where_it_stands():
    evaluate = _Evaluations()
    qualities = [0.1, 0.5, None, 0.3, 0.4, 0.2]
    outcomes = Ladder([1, 2, 4], reduction=2).climb(evaluate, [{"quality": q} for q in qualities])
    epochs = [[c["epochs"] for c in candidates] for candidates, _ in evaluate.calls]
    assert epochs == [[1] * 6, [2] * 2, [4]]  # 5 scored -> top 2; 2 -> top 1
    assert [c["quality"] for c in evaluate.calls[1][0]] == [0.5, 0.4]
    assert evaluate.calls[2][1] == {"iter": [2], "n_resources": [4]}  # rows as scikit-learn's halving writes them
    winner, failed, pruned_at_2 = outcomes[1], outcomes[2], outcomes[4]
    assert (winner.score, winner.reports, winner.pruned) == (2.0, [(1, 0.5), (2, 1.0), (4, 2.0)], False)
    assert pruned_at_2.pruned and pruned_at_2.reports == [(1, 0.4), (2, 0.8)]
    assert math.isnan(failed.score) and failed.pruned
    assert outcomes[0].pruned and outcomes[0].reports == [(1, 0.1)]


def test_random_search_with_pruning_goes_through_the_ladder_in_batches():
    class Base:
        def _run_search(self, evaluate_candidates):
            evaluate_candidates([{"quality": q} for q in (0.1, 0.2, 0.3, 0.4, 0.5)])

    search = type("Search", (PrunedRandom, Base), {})()
    search.batch, search.ladder = 2, Ladder([1, 3], reduction=2)
    done = []
    search.batch_done = lambda: done.append(len(evaluate.calls))
    evaluate = _Evaluations()
    search._run_search(evaluate)
    assert [len(candidates) for candidates, _ in evaluate.calls] == [2, 1, 2, 2, 1, 1]  # 0.3 and 0.4 both top 2 of 4
    assert done == [2, 4, 6]  # after each batch's last rung


def test_optuna_is_told_rung_scores_then_complete_pruned_or_failed():
    optuna = pytest.importorskip("optuna")
    from pipeline.tuning.tpe import tell

    study = optuna.create_study(direction="maximize")
    outcomes = [Outcome(0.9, [(1, 0.5), (3, 0.9)]), Outcome(0.4, [(1, 0.4)], pruned=True),
                Outcome(math.nan, [(1, math.nan)], pruned=True)]
    for outcome in outcomes:
        tell(study, study.ask(), outcome)
    complete, pruned, failed = study.trials
    assert complete.state == optuna.trial.TrialState.COMPLETE and complete.value == 0.9
    assert complete.intermediate_values == {1: 0.5, 3: 0.9}
    assert pruned.state == optuna.trial.TrialState.PRUNED and pruned.intermediate_values == {1: 0.4}
    assert failed.state == optuna.trial.TrialState.FAIL


def test_the_pruning_summary_counts_candidates_and_epochs_per_rung():
    results = pd.DataFrame({"iter": [0] * 8 + [1] * 2 + [2], "mean_test_score": np.linspace(0, 1, 11)})
    summary = pruning_summary(results, [1, 3, 9])
    # 8 train 1 epoch, 2 of them 2 more, 1 of those 6 more
    assert summary == {"rungs": [1, 3, 9], "reached": [8, 2, 1], "candidate_epochs": 8 + 4 + 6,
                       "without_pruning": 72}
    assert pruning_sentence(summary) == (
        "Pruning (search.pruning; rungs at epochs 1, 3 of 9): 8 candidates started; pruned: 6 after 1 epoch, "
        "1 after 3 epochs; 1 trained all 9 epochs. 18 candidate-epochs per fold instead of 72 without pruning "
        "(4.0x fewer).")


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_the_budget_starts_a_batch_only_if_an_average_one_still_fits(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    budget = CpuBudget(1.0 / 60, tmp_path)  # one CPU second of this process's tree
    budget.base -= budget.spent() - 0.1  # as if the search had started 0.1 s ago
    assert budget.allows(0)  # the first batch always starts
    _burn(0.3)
    assert budget.allows(1)  # 0.4 spent + 0.3 a batch on average <= 1
    _burn(0.35)
    assert not budget.allows(2)  # 0.75 + 0.325 > 1 (the budget is not spent yet)
    kept = json.loads((tmp_path / "run.json").read_text())["budget"]
    assert kept["batches"] == 2 and kept["exhausted"] and 0.75 <= kept["cpu_s"] < 1.0
    assert kept["per_batch_cpu_s"] == pytest.approx(0.325, abs=0.04)
    replaced = CpuBudget(1.0 / 60, tmp_path)  # a replaced worker of the same root: the root's clock goes on
    assert replaced.spent() == pytest.approx(kept["cpu_s"], abs=0.1)
    kept["root"] = "another search"  # a resumed search: its own tree's time on top of the killed one's
    (tmp_path / "run.json").write_text(json.dumps({"budget": kept}))
    resumed = CpuBudget(1.0 / 60, tmp_path)
    assert resumed.spent() == pytest.approx(kept["cpu_s"] + kept["root_cpu_s"], abs=0.1)
    assert resumed.allows(0) and resumed.allows(1) and not resumed.allows(2)  # started batches go on


def test_the_budget_counts_the_cpu_of_child_processes(tmp_path):
    import subprocess
    import sys

    (tmp_path / "run.json").write_text("{}")
    budget = CpuBudget(1, tmp_path)
    before = budget.spent()
    subprocess.run([sys.executable, "-c", "import time\nend = time.process_time() + 0.5\n"
                    "while time.process_time() < end: pass"], check=True)
    assert budget.spent() - before >= 0.5


@pytest.mark.parametrize("search, training, message", [
    ({"strategy": "grid", "pruning": {"min_epochs": 1}}, {}, "search.pruning: needs strategy tpe or random, not grid"),
    ({"strategy": "random", "budget_minutes": 5}, {}, "search.budget_minutes: needs strategy tpe"),
    ({"strategy": "tpe", "pruning": {"min_epochs": 4}}, {"epochs": 4, "batch_size": 32},
     "search.pruning.min_epochs: 4 puts the first rung at or after the last epoch (training.epochs 4)"),
    ({"strategy": "tpe", "pruning": {"min_epochs": 1, "reduction": 1}}, {}, "greater than or equal to 2"),
    ({"strategy": "tpe", "pruning": {"min_epochs": 1}, "params": {"epochs": [2, 3]}}, {},
     "search.params.epochs: search.pruning sets each candidate's epochs"),
])
def test_pruning_and_budget_settings_are_checked(tmp_path, search, training, message):
    search = {"params": {"batch_size": [16, 32]}, **search}
    path = write_config(tmp_path, search=search, **({"training": training} if training else {}))
    with pytest.raises(PipelineError, match=re.escape(message)):
        load_config(path, search=True)


def test_a_cpu_budget_is_refused_with_an_external_cluster(tmp_path):
    path = write_config(tmp_path, search={"strategy": "tpe", "budget_minutes": 3, "params": {"batch_size": [16]}},
                        execution={"backend": "dask", "scheduler": "tcp://127.0.0.1:8786"})
    with pytest.raises(PipelineError, match="an external Dask cluster's workers are not; drop the budget"):
        load_config(path, search=True)
