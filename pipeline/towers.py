"""Fused candidate training: several candidates trained together as independent towers of one model.

Why: on a small CPU a single 784-64-64-10 fit spends most of its time on per-step overhead, not
arithmetic. T candidates that share a fold, batch size, epoch count and optimizer settings can
share one TensorFlow program instead: the first layer of all towers is one 784 x (T * units)
product, the hidden layers one batched product, and the loss is the sum of the towers' losses.

Each tower is mathematically the candidate trained alone:
- the gradient of a sum of independent losses with respect to one tower's weights is that
  tower's own gradient, and SGD/RMSprop/Adam update every weight from its own gradient and
  state, so one optimizer over the stacked variables equals one optimizer per tower;
- every tower starts from the very weights and dropout streams its own model would start from
  (`initial_state` builds the candidate's Keras model under the fit's seed and copies them in),
  never from a Keras initializer applied to the stacked kernel, whose fan-in/fan-out would be wrong;
- towers may differ in initializer, width (narrower towers are zero-padded and masked, so the
  padding neither computes nor learns), activation, dropout rate and L1/L2 penalties.
A tower whose loss diverges gets NaN weights without touching the others; it is reported failed.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from ._tf import keras as _keras
from .config import ModelConfig

# A tower is one candidate's network: the `model` section of a config (all `build_model` network
# arguments, validated and hashable), the arguments that may differ between towers of one program.
Tower = ModelConfig
TOWER_ARGS = tuple(ModelConfig.model_fields)


def tower_of(model_args: dict[str, Any]) -> Tower:
    """The tower of a candidate's routed `model__*` arguments (None = the factory's default)."""
    given = {k: v for k, v in model_args.items() if v is not None}
    if "hidden_layers" in given:
        given["hidden_layers"] = tuple(int(w) for w in given["hidden_layers"])
    return Tower(**given)


@dataclass(frozen=True)
class InitialState:
    """Where a candidate's solo fit starts: its weights and its Dropout layers' random streams."""

    weights: list
    dropout_seeds: list


@lru_cache(maxsize=64)  # the same for every fold: scikeras seeds each fit's build identically
def initial_state(tower: Tower, n_features: int, n_outputs: int, output_activation: str, seed: int | None) -> InitialState:
    """The weights and dropout seed states `build_model` gives this candidate under `seed`, drawn
    exactly as scikeras' own fit draws them (its `tensorflow_random_state`): a tower starts where
    the solo fit starts, and drops the very units the solo fit would drop."""
    from scikeras.utils.random_state import tensorflow_random_state

    from .models import build_model

    def build():  # no session clearing (its garbage collection costs ~0.2 s); draws depend on the seed only
        model = build_model(n_features=n_features, n_outputs=n_outputs, output_activation=output_activation,
                            compile=False, clear_session=False, **tower.model_dump())
        seeds = [np.array(layer.seed_generator.state) for layer in model.layers if hasattr(layer, "seed_generator")]
        return InitialState(model.get_weights(), seeds)

    if seed is None:
        return build()
    with tensorflow_random_state(seed):
        return build()


def build_fused_model(towers: Sequence[Tower], n_features: int, n_outputs: int, *, task: str,
                      optimizer, steps_per_execution: int = 1):
    """A compiled Keras model whose output is (batch, towers, outputs): probabilities per tower for
    classification (softmax), values for regression. `optimizer` is a fresh Keras optimizer."""
    keras = _keras()
    keras.backend.clear_session(free_memory=True)
    depth = {len(t.hidden_layers) for t in towers}
    if len(depth) != 1:
        raise ValueError("fused towers need the same number of hidden layers")
    widths = [max(t.hidden_layers[i] for t in towers) for i in range(depth.pop())]
    sizes = [n_features, *widths, n_outputs]
    TowerDense, TowerDropout, TowerMetrics = _classes()
    layers: list = [keras.Input(shape=(n_features,))]
    rates = np.array([t.dropout for t in towers], dtype="float32")
    for index in range(len(sizes) - 1):
        last = index == len(sizes) - 2
        layers.append(TowerDense(
            towers, index, sizes[index], sizes[index + 1],
            activations=None if last else [t.activation for t in towers],
            output_activation=("softmax" if task == "classification" else "linear") if last else None,
        ))
        if not last and rates.any():
            layers.append(TowerDropout(rates, [t.hidden_layers[index] for t in towers]))
    model = keras.Sequential(layers)
    model.compile(optimizer=optimizer, loss=_summed_loss(task),
                  metrics=[TowerMetrics(len(towers), task, _dense_layers(model))],
                  steps_per_execution=steps_per_execution)
    return model


def set_initial_state(model, towers: Sequence[Tower], states: Sequence[InitialState]) -> None:
    """Copy each tower's solo-model weights (kernel, bias per Dense layer) into its slices, and its
    Dropout layers' seed states into the fused dropout layers."""
    weights = [state.weights for state in states]
    dropouts = [layer for layer in model.layers if isinstance(layer, _classes()[1])]
    for depth, layer in enumerate(dropouts):
        for t, state in enumerate(states):
            if state.dropout_seeds:
                layer.generators[t].state.assign(state.dropout_seeds[depth])
    for layer_index, layer in enumerate(_dense_layers(model)):
        kernel = np.zeros(layer.kernel.shape, dtype="float32")
        bias = np.zeros(layer.bias.shape, dtype="float32")
        for t, tower_weights in enumerate(weights):
            w, b = tower_weights[2 * layer_index], tower_weights[2 * layer_index + 1]
            rows, cols = w.shape
            if layer.shared_input:
                kernel[:rows, t, :cols] = w
            else:
                kernel[t, :rows, :cols] = w
            bias[t, : b.shape[0]] = b
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)


def tower_weights(model, towers: Sequence[Tower]) -> list[list[np.ndarray]]:
    """Each tower's weights cut back to its own shapes, in `get_weights()` order of its solo model."""
    dense = _dense_layers(model)
    result = []
    for t, tower in enumerate(towers):
        sizes = [dense[0].kernel.shape[0], *tower.hidden_layers, dense[-1].bias.shape[1]]
        weights = []
        for index, layer in enumerate(dense):
            kernel, bias = np.asarray(layer.kernel), np.asarray(layer.bias)
            rows, cols = sizes[index], sizes[index + 1]
            weights.append(kernel[:rows, t, :cols] if layer.shared_input else kernel[t, :rows, :cols])
            weights.append(bias[t, :cols])
        result.append(weights)
    return result


@dataclass
class FittedTowers:
    """A trained fused model: per-tower histories, and `view(t)` for scoring tower t."""

    model: Any
    histories: list[dict[str, list[float]]]
    task: str
    classes: np.ndarray | None
    _outputs: dict[int, tuple[Any, np.ndarray]] = field(default_factory=dict)

    def outputs(self, X) -> np.ndarray:
        """(samples, towers, outputs) for `X`, computed once per array for all towers."""
        if id(X) not in self._outputs:
            self._outputs[id(X)] = (X, self.model.predict(np.asarray(X, dtype="float32"), batch_size=PREDICT_BATCH, verbose=0))
        return self._outputs[id(X)][1]

    def view(self, tower: int):
        """Tower `tower` as a fitted scikit-learn estimator, for scikit-learn's scorers."""
        from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

        fitted = self

        class TowerClassifier(ClassifierMixin, BaseEstimator):
            classes_ = fitted.classes

            def predict_proba(self, X):
                return fitted.outputs(X)[:, tower, :]

            def predict(self, X):
                return fitted.classes[np.argmax(self.predict_proba(X), axis=1)]

        class TowerRegressor(RegressorMixin, BaseEstimator):
            def predict(self, X):
                return fitted.outputs(X)[:, tower, 0]

        return TowerClassifier() if self.task == "classification" else TowerRegressor()


# Prediction needs no small batches: bigger ones only cut per-batch overhead.
PREDICT_BATCH = 4096


def fit_towers(model_args: Sequence[dict[str, Any]], X, y, *, task: str, optimizer: str, optimizer_args: dict[str, Any],
               epochs: int, batch_size: int, validation_split: float = 0.0, shuffle: bool = True,
               steps_per_execution: int = 1, seed: int | None = None, callbacks: Sequence = ()) -> FittedTowers:
    """Train one candidate per entry of `model_args` (`build_model` network arguments) together.

    Labels are encoded as scikeras encodes them (sorted classes -> 0..n-1); training runs under
    the same seeding context as a scikeras fit.
    """
    from scikeras.utils.random_state import tensorflow_random_state

    from .models import build_optimizer

    towers = [tower_of(args) for args in model_args]
    X = np.asarray(X, dtype="float32")
    if task == "classification":
        classes = np.unique(y)
        targets, n_outputs, output_activation = np.searchsorted(classes, y), len(classes), "softmax"
    else:
        classes, targets, n_outputs, output_activation = None, np.asarray(y, dtype="float32"), 1, "linear"
    states = [initial_state(tower, X.shape[1], n_outputs, output_activation, seed) for tower in towers]
    shapes = [tower.model_copy(update={"init_mode": "", "bias_init": ""}) for tower in towers]  # initializers only set weights
    key = repr((shapes, X.shape[1], n_outputs, task, optimizer, sorted(optimizer_args.items()), steps_per_execution))
    model = _reusable.get(key)
    if model is None:
        _reusable.clear()
        model = _reusable[key] = build_fused_model(
            towers, X.shape[1], n_outputs, task=task, optimizer=build_optimizer(optimizer, **optimizer_args),
            steps_per_execution=steps_per_execution)
    else:
        _reset_training_state(model, optimizer_args)
    set_initial_state(model, towers, states)
    with tensorflow_random_state(seed) if seed is not None else nullcontext():
        history = model.fit(X, targets, batch_size=batch_size, epochs=epochs, validation_split=validation_split,
                            shuffle=shuffle, callbacks=list(callbacks), verbose=0)
    return FittedTowers(model, tower_histories(history.history, len(towers), task), task, classes)


# The last fused model of this process, reused by the next group of the same shape (another fold,
# other initializers): no new traced functions, whose memory TensorFlow never frees, and no retracing.
_reusable: dict[str, Any] = {}


def _reset_training_state(model, optimizer_args: dict[str, Any]) -> None:
    """Make a trained fused model train like a new one: zero optimizer state (moments, iterations)
    and the configured learning rate back (a schedule may have changed it). Weights and dropout
    streams are set by the caller (`set_initial_state`)."""
    keras = _keras()
    for variable in model.optimizer.variables:
        variable.assign(keras.ops.zeros_like(variable))
    if not optimizer_args.get("decay"):
        model.optimizer.learning_rate = optimizer_args.get("learning_rate") or 0.01


def _summed_loss(task: str):
    """Per sample: the towers' losses summed, so Keras' batch mean gives sum over towers of each
    tower's own batch-mean loss (and each tower its own gradient)."""
    keras = _keras()

    def loss(y_true, y_pred):  # y_pred: (batch, towers, outputs)
        per_tower = _per_tower_loss(keras, task, y_true, y_pred)
        return keras.ops.sum(per_tower, axis=1)

    return loss


def _per_tower_loss(keras, task: str, y_true, y_pred):
    """(batch, towers) losses: cross-entropy (from the softmax's logits, as Keras does for one
    model) or mean squared error."""
    towers = y_pred.shape[1]
    if task == "classification":
        labels = keras.ops.repeat(keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1, 1)), towers, axis=1)
        return keras.losses.sparse_categorical_crossentropy(labels, y_pred)
    target = keras.ops.reshape(keras.ops.cast(y_true, y_pred.dtype), (-1, 1, 1))
    return keras.ops.mean(keras.ops.square(target - y_pred), axis=-1)


def _layer_classes():
    """The Keras layer/metric classes, defined once TensorFlow is loaded."""
    keras = _keras()

    class TowerDense(keras.layers.Layer):
        """T Dense layers side by side. The first takes the shared input (batch, in) and holds an
        (in, T, out) kernel, used as one (in, T*out) matrix; later ones take (T, batch, in) and hold
        (T, in, out) kernels (a batched product). The last returns (batch, T, out)."""

        def __init__(self, towers, index, n_in, n_out, activations, output_activation, **kwargs):
            super().__init__(**kwargs)
            self.shared_input = index == 0
            self.n_towers, self.n_in, self.n_out = len(towers), n_in, n_out
            self.activations = activations
            self.output_activation = output_activation
            in_sizes = [n_in if index == 0 else t.hidden_layers[index - 1] for t in towers]
            out_sizes = [t.hidden_layers[index] if index < len(t.hidden_layers) else n_out for t in towers]
            self.mask = None
            if len(set(in_sizes)) > 1 or len(set(out_sizes)) > 1:  # zero-padded narrower towers
                mask = np.zeros((len(towers), n_in, n_out), dtype="float32")
                for t, (rows, cols) in enumerate(zip(in_sizes, out_sizes)):
                    mask[t, :rows, :cols] = 1.0
                self.mask = mask.transpose(1, 0, 2) if self.shared_input else mask
            self.penalties = np.array([[t.l1, t.l2, t.bias_l1, t.bias_l2] for t in towers], dtype="float32")

        def build(self, input_shape):
            shape = (self.n_in, self.n_towers, self.n_out) if self.shared_input else (self.n_towers, self.n_in, self.n_out)
            penalised = self.penalties.any()  # the regularizers put each tower's penalty into the training loss
            self.kernel = self.add_weight(shape=shape, initializer="zeros", name="kernel",
                                          regularizer=(lambda _: keras.ops.sum(self.kernel_penalty())) if penalised else None)
            self.bias = self.add_weight(shape=(self.n_towers, self.n_out), initializer="zeros", name="bias",
                                        regularizer=(lambda _: keras.ops.sum(self.bias_penalty())) if penalised else None)

        def kernel_penalty(self):
            """(T,) each tower's kernel L1/L2 penalty, as Keras' L1L2 regularizer computes it."""
            ops, p = keras.ops, self.penalties
            kernel = ops.transpose(self.kernel, (1, 0, 2)) if self.shared_input else self.kernel
            return p[:, 0] * ops.sum(ops.abs(kernel), axis=(1, 2)) + p[:, 1] * ops.sum(ops.square(kernel), axis=(1, 2))

        def bias_penalty(self):
            ops, p = keras.ops, self.penalties
            return p[:, 2] * ops.sum(ops.abs(self.bias), axis=1) + p[:, 3] * ops.sum(ops.square(self.bias), axis=1)

        def penalty(self):
            """(T,) each tower's total penalty (zeros without regularization)."""
            if not self.penalties.any():
                return keras.ops.zeros((self.n_towers,))
            return self.kernel_penalty() + self.bias_penalty()

        def call(self, inputs):
            ops = keras.ops
            kernel = self.kernel if self.mask is None else self.kernel * self.mask
            if self.shared_input:
                flat = ops.matmul(inputs, ops.reshape(kernel, (self.n_in, self.n_towers * self.n_out)))
                outputs = ops.transpose(ops.reshape(flat, (-1, self.n_towers, self.n_out)), (1, 0, 2))
            else:
                outputs = ops.matmul(inputs, kernel)  # (T, batch, in) @ (T, in, out)
            outputs = outputs + ops.expand_dims(self.bias, 1)
            if self.output_activation is not None:
                outputs = ops.transpose(outputs, (1, 0, 2))  # (batch, T, out)
                return keras.activations.get(self.output_activation)(outputs)
            if len(set(self.activations)) == 1:
                return keras.activations.get(self.activations[0])(outputs)
            return ops.stack([keras.activations.get(name)(outputs[t]) for t, name in enumerate(self.activations)])

    class TowerDropout(keras.layers.Layer):
        """Dropout on (T, batch, units) activations with each tower's own rate, own units (padding
        excluded) and own random stream, i.e. the draws of the tower's solo Dropout layer."""

        def __init__(self, rates, widths, **kwargs):
            super().__init__(**kwargs)
            self.rates, self.widths = [float(r) for r in rates], [int(w) for w in widths]
            self.generators = [keras.random.SeedGenerator(0) for _ in self.rates]

        def call(self, inputs, training=False):
            if not training:
                return inputs
            ops, width = keras.ops, inputs.shape[-1]
            batch = ops.shape(inputs)[1]
            masks = []  # each tower's scaled keep-mask, drawn as keras.random.dropout draws it
            for t, (rate, units) in enumerate(zip(self.rates, self.widths)):
                if rate > 0:
                    uniform = keras.random.uniform((batch, units), seed=self.generators[t])
                    mask = ops.cast(uniform >= rate, inputs.dtype) * (1.0 / (1.0 - rate))
                else:
                    mask = ops.ones((batch, units), inputs.dtype)
                masks.append(mask if units == width else ops.pad(mask, ((0, 0), (0, width - units))))
            return inputs * ops.stack(masks)

    class TowerMetrics(keras.metrics.Metric):
        """Each tower's epoch loss (penalties included, as Keras reports them) and accuracy,
        logged as `loss_<t>` / `accuracy_<t>` (and `val_` ones on validation data)."""

        def __init__(self, n_towers, task, dense_layers, **kwargs):
            super().__init__(name="towers", **kwargs)
            self.n_towers, self.task = n_towers, task
            object.__setattr__(self, "dense_layers", tuple(dense_layers))  # read, not tracked, by the metric
            self.loss_sum = self.add_variable(shape=(n_towers,), initializer="zeros", name="loss_sum")
            self.correct = self.add_variable(shape=(n_towers,), initializer="zeros", name="correct")
            self.count = self.add_variable(shape=(), initializer="zeros", name="count")

        def update_state(self, y_true, y_pred, sample_weight=None):
            ops = keras.ops
            batch = ops.cast(ops.shape(y_pred)[0], "float32")
            self.loss_sum.assign_add(ops.sum(_per_tower_loss(keras, self.task, y_true, y_pred), axis=0))
            penalties = [layer.penalty() for layer in self.dense_layers if layer.penalties.any()]
            if penalties:
                self.loss_sum.assign_add(ops.sum(ops.stack(penalties), axis=0) * batch)
            if self.task == "classification":
                predicted = ops.argmax(y_pred, axis=-1)
                labels = ops.reshape(ops.cast(y_true, predicted.dtype), (-1, 1))
                self.correct.assign_add(ops.sum(ops.cast(predicted == labels, "float32"), axis=0))
            self.count.assign_add(batch)

        def result(self):
            loss = self.loss_sum / keras.ops.maximum(self.count, 1.0)
            result = {f"loss_{t}": loss[t] for t in range(self.n_towers)}
            if self.task == "classification":
                accuracy = self.correct / keras.ops.maximum(self.count, 1.0)
                result.update({f"accuracy_{t}": accuracy[t] for t in range(self.n_towers)})
            return result

    return TowerDense, TowerDropout, TowerMetrics


_cache: dict[str, Any] = {}


def _classes():
    """(TowerDense, TowerDropout, TowerMetrics), created on first use (they subclass Keras types)."""
    if "classes" not in _cache:
        _cache["classes"] = _layer_classes()
    return _cache["classes"]


def _dense_layers(model) -> list:
    return [layer for layer in model.layers if isinstance(layer, _classes()[0])]


def tower_histories(history: dict[str, list[float]], n_towers: int, task: str) -> list[dict[str, list[float]]]:
    """Keras' fused history split per tower, under the names a solo fit logs (loss, accuracy, val_*)."""
    names = ["loss"] + (["accuracy"] if task == "classification" else [])
    shared = {name: [float(v) for v in values] for name, values in history.items() if name == "learning_rate"}
    result = []
    for t in range(n_towers):
        tower = {}
        for prefix in ("", "val_"):
            for name in names:
                if f"{prefix}{name}_{t}" in history:
                    tower[f"{prefix}{name}"] = [float(v) for v in history[f"{prefix}{name}_{t}"]]
        result.append({**tower, **shared})
    return result

