"""The model factory: a `NetworkSpec` (and an `OptimizerSpec`) -> a compiled `keras.Sequential` MLP.

One plain function, usable directly and (through `pipeline.tuning.estimator`) by scikeras. It
clears the Keras session before building, so building hundreds of models in one process does
not accumulate graphs and layer names. The network's arguments, defaults and ranges are the
vocabulary's (`pipeline.spec.vocabulary`), not repeated here.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..core.runtime import keras as _keras
from ..spec.vocabulary import NetworkSpec, OptimizerSpec, parse_initializer


def build_optimizer(spec: OptimizerSpec = OptimizerSpec()):
    """A Keras optimizer; `decay` > 0 gives classic time-based decay lr0 / (1 + decay * t).

    Keras 3 optimizers have no `decay` argument, so the decay becomes an
    `InverseTimeDecay` schedule with `decay_steps=1`: t counts updates, as in classic Keras.
    Arguments left as None keep Keras' defaults.
    """
    keras = _keras()
    rate = spec.learning_rate
    if spec.decay:
        rate = keras.optimizers.schedules.InverseTimeDecay(spec.learning_rate, decay_steps=1, decay_rate=spec.decay)
    classes = {"sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam}
    return classes[spec.name](learning_rate=rate, **spec.specific_args())


def build_model(
    network: NetworkSpec | None = None,
    *,
    n_features: int,
    n_outputs: int,
    output_activation: str = "softmax",
    loss: str = "sparse_categorical_crossentropy",
    metrics: Sequence[str] = ("accuracy",),
    optimizer: OptimizerSpec | None = None,
    steps_per_execution: int = 1,
    clear_session: bool = True,
    compile: bool = True,
    **network_args: Any,
):
    """Build and compile `Input -> [Dense -> Dropout] * len(hidden_layers) -> Dense(n_outputs)`.

    The network is `network`, or a `NetworkSpec` of `network_args` (e.g. `hidden_layers=(32,)`,
    validated like a config). `init_mode` (a Keras initializer name or call) initialises every
    Dense kernel, the output layer's included, as in the seed tutorial: all-`zeros` therefore
    cannot learn. Dropout layers are added only when `dropout` > 0. L1/L2 penalties apply to
    kernels and biases separately.
    """
    if network is not None and network_args:
        raise TypeError("give the network as a NetworkSpec or as keyword arguments, not both")
    network = network or NetworkSpec(**network_args)
    keras = _keras()
    if clear_session:
        keras.backend.clear_session(free_memory=True)

    def penalty(a: float, b: float):
        return keras.regularizers.L1L2(l1=a, l2=b) if (a or b) else None

    layers: list = [keras.Input(shape=(n_features,))]
    dense = dict(
        kernel_initializer=_initializer(network.init_mode),
        bias_initializer=_initializer(network.bias_init),
        kernel_regularizer=penalty(network.l1, network.l2),
        bias_regularizer=penalty(network.bias_l1, network.bias_l2),
    )
    for width in network.hidden_layers:
        layers.append(keras.layers.Dense(int(width), activation=network.activation, **dense))
        if network.dropout > 0:
            layers.append(keras.layers.Dropout(network.dropout))
    layers.append(keras.layers.Dense(n_outputs, activation=output_activation, **dense))
    model = keras.Sequential(layers)
    if compile:
        model.compile(optimizer=build_optimizer(optimizer or OptimizerSpec()), loss=loss, metrics=list(metrics),
                      steps_per_execution=steps_per_execution)
    return model


def reset_optimizer(optimizer, spec: OptimizerSpec) -> None:
    """Make a used optimizer behave like a new one: zero state (moments, iterations) and the
    configured learning rate back (a schedule callback may have changed it)."""
    for variable in optimizer.variables:
        variable.assign(_keras().ops.zeros_like(variable))
    if not spec.decay:
        optimizer.learning_rate = spec.learning_rate


def current_learning_rate(optimizer) -> float:
    """The rate the optimizer applies at its next update (schedules evaluated at `iterations`)."""
    return float(_keras().ops.convert_to_numpy(optimizer.learning_rate))


def _initializer(spec: str):
    """A Keras initializer from a name ("he_normal") or a call ("uniform(-10, 10)", "constant(2)")."""
    keras = _keras()
    name, args = parse_initializer(spec)
    if not args:
        return name
    classes = {"uniform": keras.initializers.RandomUniform, "normal": keras.initializers.RandomNormal,
               "constant": keras.initializers.Constant}
    return classes[name](**args)
