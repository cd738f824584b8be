"""YAML experiment files -> validated, frozen config objects.

One schema serves `pipeline.train` (one model) and `pipeline.search` (a search over many).
Unknown keys, wrong types, unknown names and out-of-range values are rejected with a
one-line `PipelineError` naming the file and the key. Search spaces use scikeras' routed
parameter names (`model__init_mode`, `optimizer__momentum`, `batch_size`), so they reach
the estimator unchanged. No TensorFlow here: validating a config takes milliseconds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Sequence, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from . import hyperparams as hp
from .errors import PipelineError

DATASET_NAMES = ("mnist", "mnist-sample", "digits", "file", "vertical", "spiral", "quadratic")
STRATEGIES = ("grid", "random", "halving-grid", "halving-random")
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")


def _single_value(info: ValidationInfo) -> bool:
    """True when one searched value is checked on its own, without the rest of its section."""
    return bool(info.context and info.context.get("single_value"))


def _one_of(name: str, allowed: Sequence[str], what: str) -> str:
    if name not in allowed:
        raise ValueError(f"unknown {what} '{name}'; choose one of {', '.join(allowed)}")
    return name


def _check_args_apply(kind: str, names: Sequence[str], args: Any, table: dict[str, Sequence[str]]) -> None:
    for name in names:
        for arg in args:
            if arg not in table.get(name, ()):
                takes = ", ".join(table.get(name, ())) or "no arguments"
                raise ValueError(f"{kind} argument '{arg}' does not apply to {name} (it takes {takes})")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    """Which dataset, and how it is split and subsampled."""

    name: str = "mnist"
    path: str | None = None
    test_size: float = Field(0.2, gt=0, lt=1)
    validation_split: float = Field(0.1, ge=0, lt=1)
    train_samples: int | None = Field(None, gt=0)
    test_samples: int | None = Field(None, gt=0)
    # Generated sets: points per class (vertical, spiral; default 100) or in all (quadratic; default 1000).
    samples: int | None = Field(None, gt=0)
    noise: float | None = Field(None, ge=0)
    x1_range: tuple[float, float] = (-5.0, 5.0)
    x2_range: tuple[float, float] = (-10.0, 10.0)

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        return _one_of(name, DATASET_NAMES, "dataset")

    @model_validator(mode="after")
    def _path_with_file(self) -> "DataConfig":
        if self.name == "file" and not self.path:
            raise ValueError("data.name 'file' needs data.path (a .npz file or a folder of IDX files)")
        if self.path and self.name != "file":
            raise ValueError(f"data.path is only used with data.name 'file', not '{self.name}'")
        return self


class ModelConfig(_Section):
    """The network: arguments of `pipeline.models.build_model`."""

    hidden_layers: tuple[int, ...] = (64, 64)
    activation: str = "relu"
    init_mode: str = "glorot_uniform"
    bias_init: str = "zeros"
    dropout: float = Field(0.0, ge=0, lt=1)
    l1: float = Field(0.0, ge=0)
    l2: float = Field(0.0, ge=0)
    bias_l1: float = Field(0.0, ge=0)
    bias_l2: float = Field(0.0, ge=0)

    @field_validator("hidden_layers")
    @classmethod
    def _positive_widths(cls, widths: tuple[int, ...]) -> tuple[int, ...]:
        if any(w <= 0 for w in widths):
            raise ValueError(f"layer widths must be positive, got {list(widths)}")
        return widths

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, name: str) -> str:
        return _one_of(name, hp.ACTIVATIONS, "activation")

    @field_validator("init_mode", "bias_init")
    @classmethod
    def _known_initializer(cls, name: str) -> str:
        hp.parse_initializer(name)
        return name


class OptimizerConfig(_Section):
    """The optimizer; fields left out keep Keras' defaults."""

    name: str = "sgd"
    learning_rate: float = Field(0.01, gt=0)
    decay: float = Field(0.0, ge=0)
    momentum: float | None = Field(None, ge=0, lt=1)
    nesterov: bool | None = None
    rho: float | None = Field(None, gt=0, lt=1)
    beta_1: float | None = Field(None, gt=0, lt=1)
    beta_2: float | None = Field(None, gt=0, lt=1)
    epsilon: float | None = Field(None, gt=0)

    @field_validator("name")
    @classmethod
    def _known_optimizer(cls, name: str) -> str:
        return _one_of(name, tuple(hp.OPTIMIZER_ARGS), "optimizer")

    @model_validator(mode="after")
    def _args_fit_optimizer(self, info: ValidationInfo) -> "OptimizerConfig":
        if not _single_value(info):
            _check_args_apply("optimizer", [self.name], self.specific_args(), hp.OPTIMIZER_ARGS)
        return self

    def specific_args(self) -> dict[str, Any]:
        """The optimizer-specific arguments that were set (momentum, rho, beta_1, ...)."""
        common = set(hp.OPTIMIZER_COMMON_ARGS) | {"name"}
        return {k: v for k, v in self.model_dump().items() if k not in common and v is not None}

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `pipeline.models.build_optimizer`."""
        return {"learning_rate": self.learning_rate, "decay": self.decay, **self.specific_args()}


class TrainingConfig(_Section):
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(128, gt=0)
    # Training steps per call into TensorFlow: cuts per-step overhead, same mathematics
    # (callbacks see fewer batch ends; epoch-level ones are unaffected).
    steps_per_execution: int = Field(32, gt=0)


class ScheduleConfig(_Section):
    """Per-epoch learning-rate schedule (see pipeline/schedules.py); 'none' keeps the optimizer's."""

    name: str = "none"
    k: float | None = Field(None, ge=0)
    drop: float | None = Field(None, gt=0, le=1)
    epochs_drop: int | None = Field(None, gt=0)
    period: int | None = Field(None, gt=0)
    period_mult: float | None = Field(None, ge=1)
    min_lr: float | None = Field(None, ge=0)

    @field_validator("name")
    @classmethod
    def _known_schedule(cls, name: str) -> str:
        return _one_of(name, tuple(hp.SCHEDULE_ARGS), "learning-rate schedule")

    @model_validator(mode="after")
    def _args_fit_schedule(self, info: ValidationInfo) -> "ScheduleConfig":
        if not _single_value(info):
            _check_args_apply("schedule", [self.name], self.kwargs(), hp.SCHEDULE_ARGS)
        return self

    def kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if k != "name" and v is not None}


class EarlyStoppingConfig(_Section):
    enabled: bool = False
    monitor: str = "val_loss"
    patience: int = Field(5, ge=0)
    min_delta: float = Field(0.0, ge=0)
    restore_best_weights: bool = True

    def kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude={"enabled"})


class CheckpointConfig(_Section):
    enabled: bool = False
    monitor: str = "val_accuracy"
    mode: Literal["auto", "min", "max"] = "auto"

    def kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude={"enabled"})


class CallbacksConfig(_Section):
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    terminate_on_nan: bool = True


class CVConfig(_Section):
    folds: int = Field(3, ge=2)
    shuffle: bool = True


ParamValues = Union[list, dict]


class SearchConfig(_Section):
    """What to search and how: the space uses scikeras' routed parameter names."""

    strategy: str = "grid"
    params: Union[dict[str, ParamValues], list[dict[str, ParamValues]]] = Field(default_factory=dict)
    n_iter: int = Field(10, gt=0)
    scoring: str | None = None
    resource: Literal["epochs", "n_samples"] = "epochs"
    factor: float = Field(3.0, gt=1)
    min_resources: int | None = Field(None, gt=0)
    max_consecutive_failures: int | None = Field(10, gt=0)
    # Fits train in worker processes that a fresh one replaces after this many fits, or once the
    # worker's memory grew by max_memory_growth (TensorFlow leaks per traced model); 0 = in-process.
    fits_per_process: int = Field(100, ge=0)
    max_memory_growth: float = Field(0.10, gt=0)
    # Candidates that differ only inside the model train together as towers of one program
    # (pipeline/fusion.py), at most max_towers at a time; fuse: false trains every fit alone.
    fuse: bool = True
    max_towers: int = Field(16, ge=2)
    # Worker processes for fused groups (null = one per CPU core), each with cores / n_jobs TensorFlow threads.
    n_jobs: int | None = Field(None, gt=0)
    # Where fits train: "local" (this machine) or "dask" (the scheduler at `scheduler`, e.g.
    # tcp://host:8786, or without it a LocalCluster sized to this machine).
    backend: Literal["local", "dask"] = "local"
    scheduler: str | None = None

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, name: str) -> str:
        return _one_of(name, STRATEGIES, "search strategy")

    def grids(self) -> list[dict[str, ParamValues]]:
        """The space as a list of sub-grids (a single dict is one sub-grid)."""
        return self.params if isinstance(self.params, list) else [self.params]


class ReportConfig(_Section):
    """Extra report figures: training-loss curves of the best candidate per combination of these
    parameters (e.g. [optimizer, optimizer__momentum, optimizer__nesterov]: one line per optimizer)."""

    curves_by: list[str] = Field(default_factory=list)


class ExperimentConfig(_Section):
    """One experiment file: the fixed settings plus, for a search, the space to search."""

    experiment: str = "experiment"
    seed: int = 0
    output_dir: str = "outputs"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    training: TrainingConfig = TrainingConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    callbacks: CallbacksConfig = CallbacksConfig()
    cv: CVConfig = CVConfig()
    search: SearchConfig = SearchConfig()
    report: ReportConfig = ReportConfig()

    @field_validator("experiment")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ValueError(f"'{name}' must be letters, digits, '-', '_' or '.' (it names the run folder)")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentConfig":
        if self.optimizer.decay and self.schedule.name != "none":
            raise ValueError(
                f"optimizer.decay and schedule '{self.schedule.name}' both set the learning rate; keep one of them"
            )
        needs_validation = [
            f"callbacks.{name}.monitor" for name, section in
            (("early_stopping", self.callbacks.early_stopping), ("checkpoint", self.callbacks.checkpoint))
            if section.enabled and section.monitor.startswith("val_")
        ]
        if needs_validation and self.data.validation_split == 0:
            raise ValueError(f"{needs_validation[0]} watches a validation metric but data.validation_split is 0; raise it")
        return self

    def to_yaml(self) -> str:
        """The resolved config as YAML; `load_config` reads it back to an equal config."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_config(path: str | Path, overrides: Sequence[str] = (), search: bool = False) -> ExperimentConfig:
    """Read, override (`key.sub=value` strings, values parsed as YAML) and validate a config file.

    With `search=True` the file must also define a non-empty search space.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"config file {path} not found: pass an existing YAML file with --config")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise PipelineError(f"{path}: not valid YAML{line}: fix the syntax") from None
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: the top level must be a mapping of sections (experiment, data, model, ...)")
    for override in overrides:
        _apply_override(raw, override)
    return parse_config(raw, source=str(path), search=search)


def parse_config(raw: dict[str, Any], source: str = "<config>", search: bool = False) -> ExperimentConfig:
    """Validate a raw mapping (as read from YAML) into an `ExperimentConfig`."""
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as error:
        raise PipelineError(f"{source}: {_describe(error)}") from None
    try:
        if search or config.search.params:
            _check_search_space(config)
    except ValueError as error:
        raise PipelineError(f"{source}: {error}") from None
    return config


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise PipelineError(f"--set {override!r}: expected key=value, e.g. --set cv.folds=5")
    node = raw
    *parents, leaf = key.strip().split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise PipelineError(f"--set {override!r}: '{part}' is not a section")
        node = child
    try:
        node[leaf] = yaml.safe_load(value)
    except yaml.YAMLError:
        raise PipelineError(f"--set {override!r}: the value is not valid YAML") from None


def _describe(error: ValidationError) -> str:
    """The first validation problem as 'key.path: message'."""
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{key}: unknown key; remove it or check its spelling"
    message = first["msg"].removeprefix("Value error, ")
    given = first.get("input")
    if first["type"] != "value_error" and not isinstance(given, (dict, list)):
        message += f" (got {given!r})"
    return f"{key}: {message}"


# Which section validates the values of each searched parameter family.
_SECTION_OF_PREFIX = {
    "model__": (ModelConfig, None),
    "optimizer__": (OptimizerConfig, None),
    "lr_schedule__": (ScheduleConfig, None),
    "early_stopping__": (EarlyStoppingConfig, None),
}
_SECTION_OF_NAME = {
    "optimizer": (OptimizerConfig, "name"),
    "lr_schedule": (ScheduleConfig, "name"),
    "batch_size": (TrainingConfig, "batch_size"),
    "epochs": (TrainingConfig, "epochs"),
}


def _check_search_space(config: ExperimentConfig) -> None:
    """Reject unknown names, empty lists and invalid values before anything is trained."""
    allowed = hp.searchable_names()
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
            for value in choices:
                _check_value(where, name, value)
            if config.search.strategy.startswith("halving") and name == config.search.resource:
                raise ValueError(f"{where}: '{name}' is the halving resource (search.resource), so it cannot "
                                 "also be searched; remove it or set search.resource: n_samples")
        _check_families_apply(config, grid)


def _check_distribution(where: str, spec: dict, strategy: str) -> None:
    if strategy not in ("random", "halving-random"):
        raise ValueError(f"{where}: distributions need strategy random or halving-random; give a list for {strategy}")
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


def _check_value(where: str, name: str, value: Any) -> None:
    section, field = _SECTION_OF_NAME.get(name, (None, None))
    if section is None:
        prefix, _, field = name.partition("__")
        section, _ = _SECTION_OF_PREFIX[prefix + "__"]
    try:
        section.model_validate({field: value}, context={"single_value": True})
    except ValidationError as error:
        raise ValueError(f"{where}: {_describe(error).partition(': ')[2]}") from None


def _check_families_apply(config: ExperimentConfig, grid: dict[str, ParamValues]) -> None:
    """Optimizer and schedule arguments must apply to every optimizer and schedule they meet."""
    def names_and_args(family: str, fixed_name: str, fixed_args: dict) -> tuple[list, set]:
        names = grid.get(family, [fixed_name])
        names = names.get("values", []) if isinstance(names, dict) else names
        args = set(fixed_args) | {k.split("__", 1)[1] for k in grid if k.startswith(family + "__")}
        return names, args - set(hp.OPTIMIZER_COMMON_ARGS)

    names, args = names_and_args("optimizer", config.optimizer.name, config.optimizer.specific_args())
    _check_args_apply("search.params: optimizer", names, sorted(args), hp.OPTIMIZER_ARGS)
    names, args = names_and_args("lr_schedule", config.schedule.name, config.schedule.kwargs())
    _check_args_apply("search.params: lr_schedule", names, sorted(args), hp.SCHEDULE_ARGS)
