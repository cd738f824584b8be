"""Search spaces: checked value by value before anything trains, then turned into scikit-learn's form.

A space uses scikeras' routed parameter names (`model__init_mode`, `optimizer__momentum`,
`batch_size`); each value is checked by the vocabulary section that owns it. A value is a
list (grid) or, for the random strategies, a distribution (`uniform`, `loguniform`,
`randint` with inclusive bounds, `choice`); a list of mappings gives sub-grids.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from . import vocabulary as vocab
from .config import ExperimentConfig, ParamValues, describe

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")


def check_search_space(config: ExperimentConfig) -> None:
    """Reject unknown names, empty lists and invalid values (ValueError naming the key)."""
    allowed = vocab.searchable()
    for grid in config.search.grids():
        if not grid:
            raise ValueError("search.params: empty search space; list at least one parameter with values")
        for name, values in grid.items():
            where = f"search.params.{name}"
            if name not in allowed:
                raise ValueError(
                    f"{where}: unknown parameter; use scikeras-routed names such as "
                    "model__init_mode, optimizer__learning_rate, batch_size (see README)"
                )
            if isinstance(values, dict):
                _check_distribution(where, values, config.search.strategy)
                choices = values.get("values", [])
            else:
                choices = values
                if not choices:
                    raise ValueError(f"{where}: empty list of values; give at least one")
            section, field = allowed[name]
            for value in choices:
                if isinstance(value, str) and value.count("(") != value.count(")"):
                    raise ValueError(f"{where}: '{value}' is a call cut at its comma: inside [...] YAML splits an "
                                     "unquoted uniform(5, -5); quote it: ['uniform(5, -5)']")
                _check_value(where, section, field, value)
            if config.search.strategy.startswith("halving") and name == config.search.resource:
                raise ValueError(f"{where}: '{name}' is the halving resource (search.resource), so it cannot "
                                 "also be searched; remove it or set search.resource: n_samples")
            if config.search.pruning is not None and name == "epochs":
                raise ValueError(f"{where}: search.pruning sets each candidate's epochs (its rungs, then "
                                 "training.epochs), so 'epochs' cannot also be searched; remove one")
            if config.search.strategy == "pbt" and name == "epochs":
                raise ValueError(f"{where}: a pbt population trains training.epochs in intervals of "
                                 "search.pbt.interval, so 'epochs' cannot be searched; remove it")
        _check_families_apply(config, grid)
    candidates = first_round_candidates(config)
    fits = candidates * config.cv.splits
    if fits > config.search.max_fits:
        raise ValueError(f"search: {candidates:,} candidates x {config.cv.describe()} = {fits:,} fits, "
                         f"more than search.max_fits ({config.search.max_fits:,}); shrink the space, or raise "
                         "search.max_fits if you mean it")


def first_round_candidates(config: ExperimentConfig) -> int:
    """How many candidates the search starts with, computed without listing them."""
    import math

    sizes = [math.prod(math.inf if isinstance(v, dict) and v.get("distribution") != "choice"
                       else len(v["values"] if isinstance(v, dict) else v) for v in grid.values())
             for grid in config.search.grids()]
    grid_size = sum(sizes)
    if config.search.strategy in ("random", "halving-random"):
        return int(min(config.search.n_iter, grid_size))
    if config.search.strategy == "tpe":
        return config.search.n_trials  # TPE may ask a value twice: it does not enumerate the space
    if config.search.strategy == "pbt":
        return config.search.pbt.population if config.search.pbt else 0
    return int(grid_size)


def param_space(config: ExperimentConfig) -> list[dict[str, Any]]:
    """The config's space for scikit-learn: lists stay lists, distributions become scipy objects."""
    return [{name: scikit_learn_values(spec) for name, spec in grid.items()} for grid in config.search.grids()]


def scikit_learn_values(spec: ParamValues):
    """One parameter of a space as scikit-learn's searches take it: a list of values, or a scipy
    distribution (which draws with `.rvs(random_state=...)`)."""
    if not isinstance(spec, dict):
        return grid_values(spec)
    from scipy import stats  # only for distributions: a slow import

    kind, low, high = spec["distribution"], spec.get("low"), spec.get("high")
    if kind == "choice":
        return scikit_learn_values(spec["values"])
    if kind == "uniform":
        return stats.uniform(loc=low, scale=high - low)
    if kind == "loguniform":
        return stats.loguniform(low, high)
    return stats.randint(low, high + 1)  # randint bounds are inclusive in our configs


def grid_values(values: list) -> list:
    """A list of a space's values as candidates take them: YAML lists (layer widths) as tuples."""
    return [tuple(v) if isinstance(v, list) else v for v in values]


def _check_distribution(where: str, spec: dict, strategy: str) -> None:
    if strategy not in ("random", "halving-random", "tpe", "pbt"):
        raise ValueError(f"{where}: distributions need strategy random, halving-random, tpe or pbt; give a list for "
                         f"{strategy}")
    kind = spec.get("distribution")
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"{where}.distribution: choose one of {', '.join(DISTRIBUTIONS)}")
    if kind == "choice":
        if set(spec) != {"distribution", "values"} or not spec["values"]:
            raise ValueError(f"{where}: a choice needs a non-empty 'values' list and nothing else")
        return
    if set(spec) != {"distribution", "low", "high"}:
        raise ValueError(f"{where}: a {kind} distribution needs exactly 'low' and 'high'")
    low, high = spec["low"], spec["high"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low >= high:
        raise ValueError(f"{where}: needs numbers with low < high (got low={low!r}, high={high!r})")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"{where}: loguniform needs low > 0 (got {low!r})")
    if kind == "randint" and not (isinstance(low, int) and isinstance(high, int)):
        raise ValueError(f"{where}: randint needs integer bounds")


def _check_value(where: str, section: type[vocab.Spec], field: str, value: Any) -> None:
    try:
        section.model_validate({field: value}, context={"single_value": True})
    except ValidationError as error:
        raise ValueError(f"{where}: {describe(error).partition(': ')[2]}") from None


def _check_families_apply(config: ExperimentConfig, grid: dict[str, ParamValues]) -> None:
    """Optimizer and schedule arguments must apply to every optimizer and schedule they meet."""
    def names_and_args(family: vocab.Family, fixed_name: str, fixed_args: dict) -> tuple[list, set]:
        names = grid.get(family.prefix, [fixed_name])
        names = names.get("values", []) if isinstance(names, dict) else names
        args = set(fixed_args) | {k.split("__", 1)[1] for k in grid if k.startswith(family.prefix + "__")}
        return names, args - set(vocab.OPTIMIZER_COMMON_ARGS)

    names, args = names_and_args(vocab.OPTIMIZER, config.optimizer.name, config.optimizer.specific_args())
    vocab.check_args_apply("search.params: optimizer", names, sorted(args), vocab.OPTIMIZER_ARGS)
    names, args = names_and_args(vocab.SCHEDULE, config.schedule.name, config.schedule.kwargs())
    vocab.check_args_apply("search.params: lr_schedule", names, sorted(args), vocab.SCHEDULE_ARGS)
