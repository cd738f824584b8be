"""The model factory: keyword hyperparameters -> a compiled `keras.Sequential` MLP.

One plain function, usable directly and (through `pipeline.estimator`) by scikeras. It
clears the Keras session before building, so building hundreds of models in one process
does not accumulate graphs and layer names.
"""

from __future__ import annotations

from typing import Any, Sequence

from . import hyperparams as hp
from ._tf import keras as _keras


def build_optimizer(
    name: str = "sgd",
    learning_rate: float = 0.01,
    decay: float = 0.0,
    **kwargs: Any,
):
    """A Keras optimizer; `decay` > 0 gives classic time-based decay lr0 / (1 + decay * t).

    Keras 3 optimizers have no `decay` argument, so the decay becomes an
    `InverseTimeDecay` schedule with `decay_steps=1`: t counts updates, as in classic Keras.
    Arguments left as None keep Keras' defaults.
    """
    keras = _keras()
    if name not in hp.OPTIMIZER_ARGS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(hp.OPTIMIZER_ARGS)}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    foreign = sorted(set(kwargs) - set(hp.OPTIMIZER_ARGS[name]))
    if foreign:
        raise ValueError(f"optimizer {name} does not take {', '.join(foreign)} (it takes {', '.join(hp.OPTIMIZER_ARGS[name])})")
    rate = learning_rate
    if decay:
        rate = keras.optimizers.schedules.InverseTimeDecay(learning_rate, decay_steps=1, decay_rate=decay)
    classes = {"sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam}
    return classes[name](learning_rate=rate, **kwargs)


def build_model(
    *,
    n_features: int,
    n_outputs: int,
    hidden_layers: Sequence[int] = (64, 64),
    activation: str = "relu",
    init_mode: str = "glorot_uniform",
    bias_init: str = "zeros",
    dropout: float = 0.0,
    l1: float = 0.0,
    l2: float = 0.0,
    bias_l1: float = 0.0,
    bias_l2: float = 0.0,
    output_activation: str = "softmax",
    loss: str = "sparse_categorical_crossentropy",
    metrics: Sequence[str] = ("accuracy",),
    optimizer: str = "sgd",
    learning_rate: float = 0.01,
    decay: float = 0.0,
    momentum: float | None = None,
    nesterov: bool | None = None,
    rho: float | None = None,
    beta_1: float | None = None,
    beta_2: float | None = None,
    epsilon: float | None = None,
    steps_per_execution: int = 1,
    clear_session: bool = True,
    compile: bool = True,
):
    """Build and compile `Input -> [Dense -> Dropout] * len(hidden_layers) -> Dense(n_outputs)`.

    `init_mode` (a Keras initializer name) initialises every Dense kernel, the output layer's
    included, as in the seed tutorial: all-`zeros` therefore cannot learn. Dropout layers are
    added only when `dropout` > 0. L1/L2 penalties apply to kernels and biases separately.
    """
    keras = _keras()
    if clear_session:
        keras.backend.clear_session(free_memory=True)
    if activation not in hp.ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(hp.ACTIVATIONS)}")

    def penalty(a: float, b: float):
        return keras.regularizers.L1L2(l1=a, l2=b) if (a or b) else None

    layers: list = [keras.Input(shape=(n_features,))]
    dense = dict(
        kernel_initializer=_initializer(init_mode),
        bias_initializer=_initializer(bias_init),
        kernel_regularizer=penalty(l1, l2),
        bias_regularizer=penalty(bias_l1, bias_l2),
    )
    for width in hidden_layers:
        layers.append(keras.layers.Dense(int(width), activation=activation, **dense))
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(n_outputs, activation=output_activation, **dense))
    model = keras.Sequential(layers)
    if not compile:
        return model
    model.compile(
        optimizer=build_optimizer(
            optimizer, learning_rate, decay,
            momentum=momentum, nesterov=nesterov, rho=rho, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
        ),
        loss=loss,
        metrics=list(metrics),
        steps_per_execution=steps_per_execution,
    )
    return model


def _initializer(spec: str):
    """A Keras initializer from a name ("he_normal") or a call ("uniform(-10, 10)", "constant(2)")."""
    keras = _keras()
    name, args = hp.parse_initializer(spec)
    if not args:
        return name
    classes = {"uniform": keras.initializers.RandomUniform, "normal": keras.initializers.RandomNormal,
               "constant": keras.initializers.Constant}
    return classes[name](**args)


# Arguments that only decide the initial weights; every other argument shapes the traced graph.
_WEIGHTS_ONLY = ("init_mode", "bias_init")
_reusable: dict[str, Any] = {}


def build_or_reuse_model(**kwargs: Any):
    """Like `build_model`, but reuses this process's last compiled model when only the initial
    weights differ (another fold, initializer, batch size or epoch count).

    Why: TensorFlow keeps memory for every traced training function that no session clearing
    frees (measured: 1.5-5 MB per model), and tracing costs time in every fit. Reusing the
    model keeps its traced functions. The result is the same as a fresh build: the weights
    come from a fresh (uncompiled, untraced) model built with the same random draws, and the
    optimizer's state is reset to that of a new optimizer.
    """
    key = repr(sorted((k, v) for k, v in kwargs.items() if k not in _WEIGHTS_ONLY))
    model = _reusable.get(key)
    if model is None:
        _reusable.clear()
        model = _reusable[key] = build_model(**kwargs)
        return model
    fresh = build_model(**{**kwargs, "compile": False})  # clears the session: same seeds as a first build
    model.set_weights(fresh.get_weights())
    for old, new in zip(model.layers, fresh.layers):  # Dropout's random state is not among the weights
        if hasattr(new, "seed_generator"):
            old.seed_generator.state.assign(new.seed_generator.state)
    for variable in model.optimizer.variables:
        variable.assign(_keras().ops.zeros_like(variable))
    if not kwargs.get("decay"):
        model.optimizer.learning_rate = kwargs.get("learning_rate", 0.01)
    return model


def current_learning_rate(optimizer) -> float:
    """The rate the optimizer applies at its next update (schedules evaluated at `iterations`)."""
    return float(_keras().ops.convert_to_numpy(optimizer.learning_rate))
