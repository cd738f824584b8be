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


def searchable_names() -> frozenset[str]:
    """Every parameter name a search space may use, in scikeras' routed form."""
    names = {f"model__{arg}" for arg in MODEL_ARGS}
    names |= {"optimizer"} | {f"optimizer__{arg}" for arg in OPTIMIZER_COMMON_ARGS}
    names |= {f"optimizer__{arg}" for args in OPTIMIZER_ARGS.values() for arg in args}
    names |= {"lr_schedule"} | {f"lr_schedule__{arg}" for args in SCHEDULE_ARGS.values() for arg in args}
    names |= {f"early_stopping__{arg}" for arg in EARLY_STOPPING_ARGS}
    names |= set(FIT_PARAMS)
    return frozenset(names)
