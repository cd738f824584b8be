"""search.strategy pbt without training: drawing and perturbing values, who takes over whom,
the lineage each member keeps, the copying of tower states, the config's refusals and the
report's tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import write_config

from pipeline.core.errors import PipelineError
from pipeline.review.tables import population_sentence, population_tables
from pipeline.spec.config import PBTConfig, load_config
from pipeline.tuning.continuations import TowerStates
from pipeline.tuning.pbt import PBTSearchCV, draw, perturb

LR = {"distribution": "loguniform", "low": 0.001, "high": 0.1}
MOMENTUM = {"distribution": "uniform", "low": 0.0, "high": 0.9}
UNITS = {"distribution": "randint", "low": 10, "high": 20}


def test_values_are_drawn_from_the_space_and_perturbed_within_it():
    rng = np.random.default_rng(0)
    pbt = PBTConfig(interval=1, resample=0.0)
    for _ in range(200):
        lr, momentum, units = draw(LR, rng), draw(MOMENTUM, rng), draw(UNITS, rng)
        assert 0.001 <= lr <= 0.1 and 0.0 <= momentum <= 0.9 and 10 <= units <= 20 and isinstance(units, int)
        moved = perturb(lr, LR, pbt, rng)
        assert moved in (min(lr * 0.8, 0.1), min(lr * 1.2, 0.1)) or moved == pytest.approx(max(lr * 0.8, 0.001))
        assert 0.0 <= perturb(momentum, MOMENTUM, pbt, rng) <= 0.9
        assert isinstance(perturb(units, UNITS, pbt, rng), int)
    assert perturb(0.1, LR, pbt, np.random.default_rng(1)) in (pytest.approx(0.08), 0.1)  # clipped at the bound
    # a list: the next value up or down, never past its ends
    assert {perturb(0.1, [0.0, 0.1, 0.2], pbt, np.random.default_rng(seed)) for seed in range(20)} == {0.0, 0.2}
    assert {perturb(0.0, [0.0, 0.1, 0.2], pbt, np.random.default_rng(seed)) for seed in range(20)} == {0.0, 0.1}
    # resample: drawn anew from the whole range
    always = PBTConfig(interval=1, resample=1.0)
    assert len({perturb(0.05, LR, always, np.random.default_rng(seed)) for seed in range(20)}) == 20


class _Population(PBTSearchCV):
    """A PBT search scored by `score(member tag, epochs, params)`, with states kept for every
    fold unless `no_states` names the candidate's tag, and the copies it asks for recorded."""

    def __init__(self, score, pbt, epochs=6, grids=None, no_states=()):
        grids = grids or [{"optimizer__learning_rate": LR, "model__hidden_layers": [[8], [16]]}]
        super().__init__(None, grids, pbt=pbt, epochs=epochs, perturbed=["optimizer__learning_rate"],
                         random_state=4, cv=2)
        self.score, self.no_states, self.copies, self.evaluated = score, no_states, [], []

    def kept_states(self, params, epochs):
        return 0 if params["member"] in self.no_states else 2

    def copy_states(self, source, target, epochs):
        self.copies.append((source["member"], target["member"], epochs))

    def evaluate(self, candidates, more_results=None):
        self.evaluated.append((list(candidates), more_results))
        return {"mean_test_score": [self.score(c["member"], c["epochs"], c) for c in candidates]}


def test_the_bottom_take_over_the_top_with_their_lineage_and_states():
    # member i scores i / 10 (member 0 worst), whatever it trained: after each interval member 0
    # takes over member 3 (fraction 0.25 of 4 = 1)
    search = _Population(lambda tag, epochs, c: int(tag[1]) / 10, PBTConfig(population=4, interval=2, resample=0.0))
    search._run_search(search.evaluate)
    assert [[c["member"] for c in candidates] for candidates, _ in search.evaluated] == \
        [["m0.0", "m1.0", "m2.0", "m3.0"], ["m0.1", "m1.0", "m2.0", "m3.0"], ["m0.2", "m1.0", "m2.0", "m3.0"]]
    assert [more for _, more in search.evaluated] == [{"iter": [i] * 4, "n_resources": [e] * 4}
                                                      for i, e in enumerate([2, 4, 6])]
    assert search.copies == [("m3.0", "m0.1", 2), ("m3.0", "m0.2", 4)]
    member, leader = search.members_[0], search.members_[3]
    assert [step["from"] for step in member.steps] == [None, 3, 3]
    # it trains the leader's network with the leader's rate times 0.8 or 1.2
    for candidates, _ in search.evaluated[1:]:
        took, led = candidates[0], candidates[3]
        assert took["model__hidden_layers"] == led["model__hidden_layers"]
        led_rate = led["optimizer__learning_rate"]
        assert any(math.isclose(took["optimizer__learning_rate"], min(max(led_rate * factor, 0.001), 0.1))
                   for factor in (0.8, 1.2))
    # its schedule: the leader's lineage up to the take-over, then its own
    assert [end for end, _ in member.schedule] == [2, 4, 6]
    assert member.schedule[0][1] == leader.schedule[0][1]
    assert search.schedule_of("m0.2") == member.schedule and search.schedule_of("m3.0") == leader.schedule


def test_failed_members_and_members_without_states_are_replaced_and_never_lead():
    scores = {"m0.0": 0.9, "m1.0": 0.8, "m2.0": math.nan, "m3.0": 0.1, "m4.0": 0.7, "m5.0": 0.6, "m6.0": 0.5,
              "m7.0": 0.4}
    search = _Population(lambda tag, epochs, c: scores.get(tag, 0.5), PBTConfig(population=8, interval=3),
                         no_states=("m0.0",))
    search._run_search(search.evaluate)
    first = {target: source for source, target, epochs in search.copies if epochs == 3}
    # the top 2 that can lead: m1 and m4 (m0 scored best but has no states); replaced: the bottom 2
    # (m2 failed, m3) and m0, which has nothing to continue from
    assert set(first) == {"m0.1", "m2.1", "m3.1"} and set(first.values()) <= {"m1.0", "m4.0"}


def test_no_member_to_lead_ends_the_population_where_it_stands():
    search = _Population(lambda tag, epochs, c: math.nan, PBTConfig(population=4, interval=2))
    search._run_search(search.evaluate)
    assert len(search.evaluated) == 1 and search.copies == []


def test_the_same_seed_and_scores_make_the_same_choices():
    def run():
        search = _Population(lambda tag, epochs, c: c["optimizer__learning_rate"] * epochs,
                              PBTConfig(population=6, interval=1, fraction=0.5), epochs=4)
        search._run_search(search.evaluate)
        return search.evaluated, search.copies

    assert run() == run()


def test_states_are_copied_fold_by_fold(tmp_path):
    states = TowerStates(tmp_path)
    states.folder.mkdir()
    for fold in ("f1", "f2"):
        for epochs in (2, 4):
            (states.folder / f"aaaa-{fold}-{epochs:05d}.npz").write_bytes(f"{fold}{epochs}".encode())
    assert states.copy("aaaa", "bbbb", 2) == 2
    assert [path.name for path in states.kept("bbbb", 2)] == ["bbbb-f1-00002.npz", "bbbb-f2-00002.npz"]
    assert (states.folder / "bbbb-f2-00002.npz").read_bytes() == b"f22" and states.kept("bbbb", 4) == []
    assert states.copy("cccc", "dddd", 2) == 0


PBT_SEARCH = {"strategy": "pbt", "pbt": {"population": 4, "interval": 1},
              "params": {"optimizer__learning_rate": LR, "model__hidden_layers": [[8], [16]]}}


@pytest.mark.parametrize("change, message", [
    ({"pbt": {"interval": 2}}, "search.pbt.interval: 2 epochs leaves no meeting before the last epoch"),
    ({"pbt": None}, "search.strategy pbt needs search.pbt with at least interval"),
    ({"pbt": {"interval": 1, "perturb": ["model__hidden_layers"]}},
     "'model__hidden_layers' cannot change while a member trains"),
    ({"pbt": {"interval": 1, "perturb": ["optimizer__momentum"]}}, "'optimizer__momentum' is not in search.params"),
    ({"params": {"model__hidden_layers": [[8], [16]]}}, "search.pbt: nothing to perturb"),
    ({"params": {"optimizer__learning_rate": LR, "epochs": [1, 2]}}, "so 'epochs' cannot be searched"),
    ({"strategy": "random"}, "search.pbt: is for strategy pbt, not random"),
    ({"pbt": {"interval": 1, "fraction": 0.6}}, "search.pbt.fraction: Input should be less than or equal to 0.5"),
])
def test_bad_pbt_settings_are_refused_with_the_fix(tmp_path, change, message):
    config = write_config(tmp_path, search={**PBT_SEARCH, **change})
    with pytest.raises(PipelineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(config, search=True)


@pytest.mark.parametrize("section, message", [
    ({"execution": {"fuse": False}}, "execution.fuse: false: strategy pbt trains its members as towers"),
    ({"callbacks": {"early_stopping": {"enabled": True, "monitor": "loss"}}}, "callbacks.early_stopping: not with"),
])
def test_pbt_needs_fused_towers_and_no_callback_state(tmp_path, section, message):
    config = write_config(tmp_path, search=PBT_SEARCH, **section)
    with pytest.raises(PipelineError, match=message):
        load_config(config, search=True)


def test_the_perturbed_parameters_default_to_every_searched_one_that_may_change(tmp_path):
    config = load_config(write_config(tmp_path, search={**PBT_SEARCH, "params": {
        "optimizer__learning_rate": LR, "model__dropout": [0.0, 0.2], "batch_size": [16, 32]}}), search=True)
    assert config.search.pbt.perturbed(["optimizer__learning_rate", "model__dropout", "batch_size"]) == \
        ["optimizer__learning_rate", "model__dropout"]
    assert PBTConfig(interval=3).ends(10) == [3, 6, 9, 10] and PBTConfig(interval=5).ends(10) == [5, 10]


def test_the_report_tells_the_lineage_and_the_winners_schedule():
    summary = {"population": 2, "interval": 2, "fraction": 0.5, "perturbed": ["optimizer__learning_rate"],
               "winner": "m1.1",
               "members": [{"member": 0, "ended_as": "m0.0", "steps": [
                   {"epochs": 2, "score": 0.5, "from": None, "params": {"optimizer__learning_rate": 0.01}},
                   {"epochs": 4, "score": 0.6, "from": None, "params": {"optimizer__learning_rate": 0.01}}]},
                   {"member": 1, "ended_as": "m1.1", "steps": [
                       {"epochs": 2, "score": math.nan, "from": None, "params": {"optimizer__learning_rate": 0.3}},
                       {"epochs": 4, "score": 0.7, "from": 0, "params": {"optimizer__learning_rate": 0.012}}]}],
               "schedule": [{"epochs": 2, "optimizer__learning_rate": 0.01},
                            {"epochs": 4, "optimizer__learning_rate": 0.0123456}]}
    schedule, lineage = population_tables(summary)
    assert schedule.to_dict("records") == [{"until epoch": 2, "optimizer__learning_rate": "0.01"},
                                           {"until epoch": 4, "optimizer__learning_rate": "0.01235"}]
    assert lineage.to_dict("records") == [
        {"member": 0, "ended as": "m0.0", "epoch 2": "0.5000", "epoch 4": "0.6000"},
        {"member": 1, "ended as": "m1.1", "epoch 2": "failed", "epoch 4": "0.7000 <- m0"}]
    sentence = population_sentence(summary)
    assert "2 members, scored at epochs 2, 4" in sentence and "1 take-over in all" in sentence
    assert "The winner ended as m1.1" in sentence


def test_the_count_is_every_member_at_every_interval_and_the_refit(tmp_path):
    from pipeline.data import load_dataset
    from pipeline.tuning.strategies import count_fits

    config = load_config(write_config(tmp_path, search=PBT_SEARCH, training={"epochs": 3, "batch_size": 32}),
                         ["data.name=digits"], search=True)
    plan = count_fits(config, load_dataset(config.data, config.seed))
    assert plan.candidates == (4, 4, 4) and plan.fits == 4 * 3 * 2 + 1
