"""The vocabulary of hyperparameters: every argument a network, optimizer, schedule, callback or
fit takes, with its type, default and allowed range, defined once.

Each family is a frozen pydantic section. The config file validates against these sections,
the estimator routes its scikeras-style parameters (`model__init_mode`, `optimizer__momentum`)
into them (`FAMILIES`), the model factory and the callbacks take them as arguments, and the
fused engine treats a `NetworkSpec` as one tower. `tests/unit/test_models.py` checks the names
against Keras' own registries. Free of TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Sequence

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

INITIALIZERS = (
    "uniform", "lecun_uniform", "normal", "zeros", "ones", "glorot_normal", "glorot_uniform",
    "he_normal", "he_uniform", "lecun_normal", "random_normal", "random_uniform",
    "truncated_normal", "orthogonal",
)
# Parameterised initializers, written like calls: "uniform(-10, 10)", "normal(0, 0.5)", "constant(2)".
INITIALIZER_CALLS = {"uniform": ("minval", "maxval"), "normal": ("mean", "stddev"), "constant": ("value",)}

ACTIVATIONS = (
    "relu", "tanh", "sigmoid", "elu", "selu", "softplus", "gelu", "swish", "silu",
    "leaky_relu", "relu6", "mish", "hard_sigmoid", "linear",
)

# Optimizer name -> the arguments it accepts besides learning_rate and decay.
OPTIMIZER_ARGS = {
    "sgd": ("momentum", "nesterov"),
    "rmsprop": ("rho", "momentum", "epsilon"),
    "adam": ("beta_1", "beta_2", "epsilon"),
}
OPTIMIZER_COMMON_ARGS = ("learning_rate", "decay")

# Learning-rate schedule name -> its parameters (all per epoch; see pipeline/training/schedules.py).
SCHEDULE_ARGS = {
    "none": (),
    "exponential": ("k",),
    "step": ("drop", "epochs_drop"),
    "warm_restarts": ("period", "period_mult", "min_lr"),
}


def parse_initializer(spec: str) -> tuple[str, dict[str, float]]:
    """`"uniform(-10, 10)"` -> `("uniform", {"minval": -10.0, "maxval": 10.0})`; a plain name -> `(name, {})`.

    Raises ValueError naming the accepted forms when `spec` is neither.
    """
    spec = str(spec).strip()
    if "(" not in spec:
        if spec not in INITIALIZERS:
            raise ValueError(f"unknown initializer '{spec}'; choose one of {', '.join(INITIALIZERS)}, "
                             "or uniform(low, high), normal(mean, std), constant(value)")
        return spec, {}
    name, _, rest = spec.partition("(")
    name, names = name.strip(), INITIALIZER_CALLS.get(name.strip())
    try:
        values = [float(v) for v in rest.rstrip(")").split(",")] if rest.endswith(")") else None
    except ValueError:
        values = None
    if names is None or values is None or len(values) != len(names):
        raise ValueError(f"initializer '{spec}' not understood; write uniform(low, high), normal(mean, std) "
                         "or constant(value)")
    if name == "uniform" and values[0] >= values[1]:
        raise ValueError(f"initializer '{spec}': low must be below high")
    return name, dict(zip(names, values))


def one_of(name: str, allowed: Sequence[str], what: str) -> str:
    if name not in allowed:
        raise ValueError(f"unknown {what} '{name}'; choose one of {', '.join(allowed)}")
    return name


def check_args_apply(kind: str, names: Sequence[str], args: Any, table: dict[str, Sequence[str]]) -> None:
    """Every argument in `args` must apply to every name in `names` (e.g. momentum to sgd and rmsprop)."""
    for name in names:
        for arg in args:
            if arg not in table.get(name, ()):
                takes = ", ".join(table.get(name, ())) or "no arguments"
                raise ValueError(f"{kind} argument '{arg}' does not apply to {name} (it takes {takes})")


def _single_value(info: ValidationInfo) -> bool:
    """True when one searched value is checked on its own, without the rest of its section."""
    return bool(info.context and info.context.get("single_value"))


class Spec(BaseModel):
    """A frozen section: unknown keys are errors, values are hashable and compare by content."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkSpec(Spec):
    """The network: `Input -> [Dense -> Dropout] * len(hidden_layers) -> Dense(outputs)`."""

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
        return one_of(name, ACTIVATIONS, "activation")

    @field_validator("init_mode", "bias_init")
    @classmethod
    def _known_initializer(cls, name: str) -> str:
        parse_initializer(name)
        return name


class OptimizerSpec(Spec):
    """The optimizer; arguments left out (None) keep Keras' defaults."""

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
        return one_of(name, tuple(OPTIMIZER_ARGS), "optimizer")

    @model_validator(mode="after")
    def _args_fit_optimizer(self, info: ValidationInfo) -> "OptimizerSpec":
        if not _single_value(info):
            check_args_apply("optimizer", [self.name], self.specific_args(), OPTIMIZER_ARGS)
        return self

    def specific_args(self) -> dict[str, Any]:
        """The optimizer-specific arguments that were set (momentum, rho, beta_1, ...)."""
        common = set(OPTIMIZER_COMMON_ARGS) | {"name"}
        return {k: v for k, v in self.model_dump().items() if k not in common and v is not None}

    def kwargs(self) -> dict[str, Any]:
        """learning_rate, decay and the specific arguments that were set."""
        return {"learning_rate": self.learning_rate, "decay": self.decay, **self.specific_args()}


class ScheduleSpec(Spec):
    """Per-epoch learning-rate schedule (see pipeline/training/schedules.py); 'none' keeps the optimizer's."""

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
        return one_of(name, tuple(SCHEDULE_ARGS), "learning-rate schedule")

    @model_validator(mode="after")
    def _args_fit_schedule(self, info: ValidationInfo) -> "ScheduleSpec":
        if not _single_value(info):
            check_args_apply("schedule", [self.name], self.kwargs(), SCHEDULE_ARGS)
        return self

    def kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if k != "name" and v is not None}


# What every fit logs, so what EarlyStopping and ModelCheckpoint can watch (accuracy: classes only).
MONITORS = ("loss", "val_loss", "accuracy", "val_accuracy")


Monitor = Annotated[str, AfterValidator(lambda name: one_of(name, MONITORS, "monitored metric"))]


class EarlyStoppingSpec(Spec):
    enabled: bool = False
    monitor: Monitor = "val_loss"
    patience: int = Field(5, ge=0)
    min_delta: float = Field(0.0, ge=0)
    restore_best_weights: bool = True

    def kwargs(self) -> dict[str, Any]:
        """Arguments of `keras.callbacks.EarlyStopping`."""
        return self.model_dump(exclude={"enabled"})


class CheckpointSpec(Spec):
    enabled: bool = False
    monitor: Monitor = "val_accuracy"
    mode: Literal["auto", "min", "max"] = "auto"

    def kwargs(self) -> dict[str, Any]:
        """Arguments of `keras.callbacks.ModelCheckpoint` besides the path."""
        return self.model_dump(exclude={"enabled"})


class TrainingSpec(Spec):
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(128, gt=0)
    # Training steps per call into TensorFlow: cuts per-step overhead, same mathematics
    # (callbacks see fewer batch ends; epoch-level ones are unaffected).
    steps_per_execution: int = Field(32, gt=0)


@dataclass(frozen=True)
class Family:
    """A family of estimator parameters, routed scikeras-style: `{prefix}` sets the section's
    `switch` field (optimizer -> name, early_stopping -> enabled), `{prefix}__{field}` a field."""

    prefix: str
    spec: type[Spec]
    switch: str | None = None

    def fields(self) -> tuple[str, ...]:
        return tuple(name for name in self.spec.model_fields if name != self.switch)

    def build(self, params: dict[str, Any]) -> Spec:
        """The validated section of an estimator's parameters (None values mean: the default)."""
        given = {field: params.get(f"{self.prefix}__{field}") for field in self.fields()}
        if self.switch:
            given[self.switch] = params.get(self.prefix)
        return self.spec(**{k: v for k, v in given.items() if v is not None})

    def params(self, spec: Spec) -> dict[str, Any]:
        """The estimator parameters that carry `spec` (the inverse of `build`)."""
        values = spec.model_dump()
        routed = {f"{self.prefix}__{field}": values[field] for field in self.fields() if values[field] is not None}
        return {**({self.prefix: values[self.switch]} if self.switch else {}), **routed}


NETWORK = Family("model", NetworkSpec)
OPTIMIZER = Family("optimizer", OptimizerSpec, switch="name")
SCHEDULE = Family("lr_schedule", ScheduleSpec, switch="name")
EARLY_STOPPING = Family("early_stopping", EarlyStoppingSpec, switch="enabled")
CHECKPOINT = Family("checkpoint", CheckpointSpec, switch="enabled")
FAMILIES = (NETWORK, OPTIMIZER, SCHEDULE, EARLY_STOPPING, CHECKPOINT)

# Arguments of the fit itself that a search may vary (fields of TrainingSpec).
FIT_PARAMS = ("batch_size", "epochs")


def searchable() -> dict[str, tuple[type[Spec], str]]:
    """Every parameter name a search space may use (scikeras' routed form) -> (section, field)
    that validates its values. Checkpoint settings and turning callbacks on or off are not searched."""
    names: dict[str, tuple[type[Spec], str]] = {name: (TrainingSpec, name) for name in FIT_PARAMS}
    for family in (NETWORK, OPTIMIZER, SCHEDULE, EARLY_STOPPING):
        if family.switch and family is not EARLY_STOPPING:
            names[family.prefix] = (family.spec, family.switch)
        names.update({f"{family.prefix}__{field}": (family.spec, field) for field in family.fields()})
    return names
