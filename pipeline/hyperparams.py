"""The vocabulary of hyperparameters: names the factory, optimizers, schedules and fits accept.

Kept free of TensorFlow so config validation stays fast; `tests/unit/test_models.py`
checks this vocabulary against the real factory signature and Keras' own registries,
so the two cannot drift apart.
"""

from __future__ import annotations

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

# Learning-rate schedule name -> its parameters (all per epoch; see pipeline/schedules.py).
SCHEDULE_ARGS = {
    "none": (),
    "exponential": ("k",),
    "step": ("drop", "epochs_drop"),
    "warm_restarts": ("period", "period_mult", "min_lr"),
}

# Keyword arguments of pipeline.models.build_model that describe the network itself.
MODEL_ARGS = (
    "hidden_layers", "activation", "init_mode", "bias_init", "dropout",
    "l1", "l2", "bias_l1", "bias_l2",
)

EARLY_STOPPING_ARGS = ("monitor", "patience", "min_delta", "restore_best_weights")
CHECKPOINT_ARGS = ("monitor", "mode")

# Parameters of the fit itself that a search may vary.
FIT_PARAMS = ("batch_size", "epochs")


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


def searchable_names() -> frozenset[str]:
    """Every parameter name a search space may use, in scikeras' routed form."""
    names = {f"model__{arg}" for arg in MODEL_ARGS}
    names |= {"optimizer"} | {f"optimizer__{arg}" for arg in OPTIMIZER_COMMON_ARGS}
    names |= {f"optimizer__{arg}" for args in OPTIMIZER_ARGS.values() for arg in args}
    names |= {"lr_schedule"} | {f"lr_schedule__{arg}" for args in SCHEDULE_ARGS.values() for arg in args}
    names |= {f"early_stopping__{arg}" for arg in EARLY_STOPPING_ARGS}
    names |= set(FIT_PARAMS)
    return frozenset(names)
