"""Fused candidate training: several candidates trained together as independent towers of one model.

Why: on a small CPU a single 784-64-64-10 fit spends most of its time on per-step overhead, not
arithmetic. T candidates that share a fold, batch size, epoch count, depth and optimizer kind
can share one TensorFlow program instead: the first layer of all towers is one 784 x (T * units)
product, the hidden layers one batched product, and the loss is the sum of the towers' losses.

Each tower is mathematically the candidate trained alone:
- the gradient of a sum of independent losses with respect to one tower's weights is that
  tower's own gradient, and SGD/RMSprop/Adam update every weight from its own gradient and
  state; the `TowerOptimizer` applies Keras' formulas with each tower's own learning rate,
  decay, momentum, Nesterov flag, rho, betas and epsilon, and `TowerSchedules` sets each
  tower's epoch schedule, so one optimizer over the stacked variables equals one per tower;
- every tower starts from the very weights and dropout streams its own model would start from
  (`initial_state` builds the candidate's Keras model under the fit's seed and copies them in),
  never from a Keras initializer applied to the stacked kernel, whose fan-in/fan-out would be wrong;
- towers may differ in initializer, width (narrower towers are zero-padded and masked, so the
  padding neither computes nor learns), activation, dropout rate and L1/L2 penalties.
A tower is a `NetworkSpec`, the vocabulary's network section. A tower whose loss diverges gets
NaN weights without touching the others; it is reported failed.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from ..spec.vocabulary import CheckpointSpec, EarlyStoppingSpec, NetworkSpec, OptimizerSpec, ScheduleSpec
from .context import ModelCache
from .factory import build_model
from .fold_batches import fold_batches
from .schedules import schedule_function

# Prediction needs no small batches: bigger ones only cut per-batch overhead.
PREDICT_BATCH = 4096

# How a fit is seeded: a context manager taking the fit's seed (scikeras' own, handed over by the
# estimator module), so that towers draw exactly what the solo fits draw.
Seeding = Callable[[int], AbstractContextManager]


@dataclass(frozen=True)
class InitialState:
    """Where a candidate's solo fit starts: its weights and its Dropout layers' random streams."""

    weights: list
    dropout_seeds: list


@dataclass(frozen=True)
class TowerState:
    """Where a tower stood when its epochs ended, all its solo fit would carry into more epochs:
    weights, optimizer steps and slots, Dropout streams, and the history so far. Successive
    halving over epochs continues a round's survivors from it instead of retraining them (Keras
    draws the same batch order in every epoch of a seeded fit, so epoch e+1 onwards is what a
    longer solo fit would train)."""

    epochs: int
    iterations: int
    weights: list
    slots: dict[str, list]
    dropout_seeds: list
    history: dict[str, list[float]] = field(default_factory=dict)


def initial_state(tower: NetworkSpec, n_features: int, n_outputs: int, output_activation: str, seed: int | None,
                  seeding: Seeding | None = None) -> InitialState:
    """The weights and dropout seed states `build_model` gives this candidate under `seed`, drawn
    exactly as the solo fit draws them (under `seeding(seed)`): a tower starts where the solo fit
    starts, and drops the very units the solo fit would drop."""
    with seeding(seed) if seeding is not None and seed is not None else nullcontext():
        # no session clearing (its garbage collection costs ~0.2 s); draws depend on the seed only
        model = build_model(tower, n_features=n_features, n_outputs=n_outputs, output_activation=output_activation,
                            compile=False, clear_session=False)
        seeds = [np.array(layer.seed_generator.state) for layer in model.layers if hasattr(layer, "seed_generator")]
        return InitialState(model.get_weights(), seeds)


def build_fused_model(towers: Sequence[NetworkSpec], n_features: int, n_outputs: int, *, task: str,
                      optimizer: str, folds: int = 1, steps_per_execution: int = 1, program: dict | None = None):
    """A compiled Keras model from (batch, folds, features) to (batch, towers, outputs):
    probabilities per tower for classification (softmax), values for regression; trained by a
    `TowerOptimizer` of kind `optimizer` (sgd, rmsprop, adam), built, whose per-tower settings
    `fit_towers` sets (`program`: the optimizer's `TowerOptimizer.program_for` flags). Towers
    are fold-major: tower t reads fold t // (towers / folds); on (batch, 1, features) every
    tower reads the same samples (how towers are scored)."""
    from ..core.runtime import keras as _keras
    from .tower_layers import TowerDense, TowerDropout, TowerMetrics, TowerOptimizer, summed_loss

    keras = _keras()
    keras.backend.clear_session(free_memory=True)
    depth = {len(t.hidden_layers) for t in towers}
    if len(depth) != 1:
        raise ValueError("fused towers need the same number of hidden layers")
    widths = [max(t.hidden_layers[i] for t in towers) for i in range(depth.pop())]
    sizes = [n_features, *widths, n_outputs]
    if len(towers) % folds:
        raise ValueError("fused towers need the same number of towers for every fold")
    layers: list = [keras.Input(shape=(None, n_features))]  # `folds` samples side by side, or one for all
    rates = np.array([t.dropout for t in towers], dtype="float32")
    for index in range(len(sizes) - 1):
        last = index == len(sizes) - 2
        layers.append(TowerDense(
            towers, index, sizes[index], sizes[index + 1],
            activations=None if last else [t.activation for t in towers],
            output_activation=("softmax" if task == "classification" else "linear") if last else None,
            folds=folds,
        ))
        if not last and rates.any():
            layers.append(TowerDropout(rates, [t.hidden_layers[index] for t in towers]))
    model = keras.Sequential(layers)
    shapes = {variable.path: layer.tower_shape(variable)
              for layer in dense_layers(model) for variable in (layer.kernel, layer.bias)}
    model.compile(optimizer=TowerOptimizer(optimizer, len(towers), shapes, **(program or {})),
                  loss=summed_loss(task, folds),
                  metrics=[TowerMetrics(len(towers), folds, task, dense_layers(model))],
                  steps_per_execution=steps_per_execution)
    model.optimizer.build(model.trainable_variables)
    return model


def set_initial_state(model, states: Sequence[InitialState | TowerState]) -> None:
    """Copy each tower's solo-model weights (kernel, bias per Dense layer) into its slices, and its
    Dropout layers' seed states into the fused dropout layers."""
    from .tower_layers import TowerDropout

    dropouts = [layer for layer in model.layers if isinstance(layer, TowerDropout)]
    for depth, layer in enumerate(dropouts):
        seeds = np.array(layer.seeds)
        for t, state in enumerate(states):
            if state.dropout_seeds:
                seeds[t] = state.dropout_seeds[depth]
        layer.seeds.assign(seeds)
    _write_towers(model, [state.weights for state in states], lambda variable: variable, zeros=True)


def set_dropout_rates(model, towers: Sequence[NetworkSpec]) -> None:
    """Give a (possibly reused) fused model's Dropout layers these towers' rates."""
    from .tower_layers import TowerDropout

    for layer in model.layers:
        if isinstance(layer, TowerDropout):
            layer.set_rates([tower.dropout for tower in towers])


def set_tower_weights(model, towers: Sequence[NetworkSpec], tower: int, weights: list[np.ndarray]) -> None:
    """Write one tower's weights (in its solo model's `get_weights()` order) into its slices."""
    _write_towers(model, [weights if t == tower else None for t in range(len(towers))], lambda variable: variable)


def continue_from(model, states: Sequence[TowerState]) -> None:
    """Put every tower where its state says it stood: weights, Dropout streams, optimizer slots
    and step count (one for all: the towers of a program step together)."""
    optimizer = model.optimizer
    if len({state.iterations for state in states}) != 1:
        raise ValueError("towers continued in one program must have taken the same number of steps")
    set_initial_state(model, states)
    for slot, variables in optimizer.slots.items():
        _write_towers(model, [state.slots[slot] for state in states],
                      lambda variable: variables[optimizer._get_variable_index(variable)], zeros=True)
    optimizer.iterations.assign(states[0].iterations)


def _write_towers(model, values: Sequence[list | None], target: Callable, zeros: bool = False) -> None:
    """Write each tower's values (a list in its solo model's `get_weights()` order, or None to
    leave the tower as it is) into its slices of `target(variable)` for each fused kernel and
    bias (the variable itself, or an optimizer slot stacked like it); with `zeros`, everything
    not written (the padding of narrower towers) becomes zero."""
    for layer_index, layer in enumerate(dense_layers(model)):
        kernel_variable, bias_variable = target(layer.kernel), target(layer.bias)
        kernel = np.zeros(kernel_variable.shape, "float32") if zeros else np.array(kernel_variable)
        bias = np.zeros(bias_variable.shape, "float32") if zeros else np.array(bias_variable)
        for t, tower in enumerate(values):
            if tower is not None:
                w, b = tower[2 * layer_index], tower[2 * layer_index + 1]
                kernel[layer.tower_slice(t, *w.shape)] = w
                bias[t, : b.shape[0]] = b
        kernel_variable.assign(kernel)
        bias_variable.assign(bias)


def tower_weights(model, towers: Sequence[NetworkSpec]) -> list[list[np.ndarray]]:
    """Each tower's weights cut back to its own shapes, in `get_weights()` order of its solo model."""
    return [tower_values(model, towers, t, np.asarray) for t in range(len(towers))]


def tower_values(model, towers: Sequence[NetworkSpec], tower: int, values_of: Callable) -> list[np.ndarray]:
    """Tower `tower`'s part of `values_of(variable)` for each fused variable (its values, or an
    optimizer slot stacked like it), in `get_weights()` order of the tower's solo model."""
    dense = dense_layers(model)
    sizes = [dense[0].n_in, *towers[tower].hidden_layers, dense[-1].n_out]
    values = []
    for index, layer in enumerate(dense):
        rows, cols = sizes[index], sizes[index + 1]
        values.append(values_of(layer.kernel)[layer.tower_slice(tower, rows, cols)])
        values.append(values_of(layer.bias)[tower, :cols])
    return values


def copy_optimizer_state(model, towers: Sequence[NetworkSpec], tower: int, solo) -> None:
    """Tower `tower`'s optimizer state (step count, learning rate, slots) into the Keras optimizer
    `solo` was compiled with, so that `solo.save_weights` writes what the tower's solo fit would.

    Keras names a slot `{variable path}_{slot}`; the solo optimizer only has the slots its own
    settings use (SGD without momentum has none), each filled from the tower's slice of ours."""
    fused, own = model.optimizer, solo.optimizer
    own.build(solo.trainable_variables)
    own.iterations.assign(fused.iterations)
    if not callable(own._learning_rate):  # a rate of its own, not a decay schedule
        own.learning_rate.assign(np.asarray(fused.hyper["rates"])[tower])
    slots = {f"{variable.path.replace('/', '_')}_{slot}": values
             for slot, cut in tower_slots(model, towers, tower).items()
             for variable, values in zip(solo.trainable_variables, cut)}
    for variable in own.variables:
        if variable.name in slots:
            variable.assign(slots[variable.name])


def tower_slots(model, towers: Sequence[NetworkSpec], tower: int) -> dict[str, list[np.ndarray]]:
    """Tower `tower`'s optimizer slots (momentum, velocity, ...) in its solo model's variable order."""
    optimizer = model.optimizer

    def cut(variables):  # copies: the slots go on changing as training goes on
        return tower_values(model, towers, tower,
                            lambda variable: np.array(variables[optimizer._get_variable_index(variable)]))

    return {slot: cut(variables) for slot, variables in optimizer.slots.items()}


def tower_state(model, towers: Sequence[NetworkSpec], tower: int, epochs: int) -> TowerState:
    """Tower `tower` as it stands after `epochs` epochs (its history is added once training ends)."""
    from .tower_layers import TowerDropout

    dropout_seeds = [np.array(layer.seeds)[tower] for layer in model.layers if isinstance(layer, TowerDropout)]
    return TowerState(epochs, int(model.optimizer.iterations), tower_values(model, towers, tower, np.array),
                      tower_slots(model, towers, tower), dropout_seeds)


@dataclass
class FittedTowers:
    """A trained fused model: per-tower histories, and `view(t)` for scoring tower t.

    A tower that trained for fewer epochs than the program (epochs as a shared prefix) is scored
    from `snapshots`: the outputs on the arrays to score, taken when its last epoch ended.
    `states` holds, when asked for, where each tower stood then (see `TowerState`)."""

    model: Any
    histories: list[dict[str, list[float]]]
    task: str
    classes: np.ndarray | None
    snapshots: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)  # tower -> id(array) -> outputs
    states: dict[int, TowerState] = field(default_factory=dict)
    _outputs: dict[int, tuple[Any, np.ndarray]] = field(default_factory=dict)

    def outputs(self, X) -> np.ndarray:
        """(samples, towers, outputs) for `X` at the end of training, computed once per array."""
        if id(X) not in self._outputs:
            self._outputs[id(X)] = (X, predict_towers(self.model, X))
        return self._outputs[id(X)][1]

    def view(self, tower: int, of: np.ndarray | None = None):
        """Tower `tower` as a fitted scikit-learn estimator, for scikit-learn's scorers. With `of`
        (an array it was scored on), it predicts row numbers: `predict(rows)` is its prediction
        on `of[rows]`, so a fold's samples are scored from the outputs on the whole array."""
        def outputs(X):
            array = X if of is None else of
            snapshot = self.snapshots.get(tower, {}).get(id(array))
            values = snapshot if snapshot is not None else self.outputs(array)[:, tower, :]
            return values if of is None else values[X]

        return fitted_view(outputs, self.task, self.classes)


def predict_towers(model, X) -> np.ndarray:
    """(samples, towers, outputs) of a fused model on (samples, features): every tower, of
    every fold, on the same samples; in big batches."""
    return model.predict(np.asarray(X, dtype="float32")[:, None, :], batch_size=PREDICT_BATCH, verbose=0)


def fitted_view(outputs: Callable[[Any], np.ndarray], task: str, classes: np.ndarray | None):
    """A fitted scikit-learn estimator over `outputs(X)` -> (samples, outputs): probabilities of
    `classes` (predicting the most probable) or one regression value per sample."""
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

    class OutputClassifier(ClassifierMixin, BaseEstimator):
        classes_ = classes

        def predict_proba(self, X):
            return outputs(X)

        def predict(self, X):
            return classes[np.argmax(self.predict_proba(X), axis=1)]

    class OutputRegressor(RegressorMixin, BaseEstimator):
        def predict(self, X):
            return outputs(X)[:, 0]

    return OutputClassifier() if task == "classification" else OutputRegressor()


def fit_towers(towers: Sequence[NetworkSpec], X, y, *, task: str, optimizers: Sequence[OptimizerSpec],
               schedules: Sequence[ScheduleSpec] | None = None, epochs: int | Sequence[int], batch_size: int,
               early_stopping: Sequence[EarlyStoppingSpec | None] | None = None, validation_split: float = 0.0,
               shuffle: bool = True, steps_per_execution: int = 1, seed: int | None = None,
               seeding: Seeding | None = None, callbacks: Sequence = (), cache: ModelCache | None = None,
               score_on: Sequence[np.ndarray] = (),
               checkpoints: Sequence[tuple[CheckpointSpec, str] | None] | None = None,
               start: Sequence[TowerState] | None = None, keep_states: bool = False,
               folds: Sequence[np.ndarray] | None = None) -> FittedTowers:
    """Train one candidate per tower together: tower t with network `towers[t]`, optimizer
    settings `optimizers[t]` (one kind for all), epoch schedule `schedules[t]`, `epochs[t]`
    epochs (one number: all alike), early stopping `early_stopping[t]` and checkpoint
    `checkpoints[t]` (its spec and the weights file its solo fit would write).

    `X` is (samples, features) with labels `y` (samples,). Every tower trains on all of it, or,
    with `folds` (F arrays of row numbers: each fold's training rows), on its fold's rows:
    towers are then fold-major (the first T/F train on fold 0, ...) and each sees its fold's
    batches in the order its solo fit draws them (`pipeline.training.fold_batches`; the folds
    need the same number of batches per epoch). Every tower is scored on the whole of each
    (samples, features) array in `score_on`, once for all towers; the caller picks a fold's rows.

    A tower ends where its solo fit would: after its epochs (epochs are a shared prefix: a solo
    fit of e epochs draws the same batches, dropout masks and rates in its e epochs as a longer
    one does in its first e) or when its own EarlyStopping stops it (best weights restored if
    asked). It is then scored from its outputs on `score_on` at that point, its history cut
    there; the program runs until every tower has ended. With `keep_states`, where each tower
    stood then is kept too (`FittedTowers.states`; not for towers with early stopping or a
    checkpoint, whose callbacks' state it would not hold); with `start` (one state per tower,
    all after the same number of epochs), the towers continue from those states instead of
    starting afresh, and their histories include the epochs before.

    Labels are encoded as scikeras encodes them (sorted classes -> 0..n-1); the model is built and
    trained under `seeding(seed)`, the seeding of a solo fit. With `cache`, the last fused model of
    the same shapes and optimizer kind is reused (no retracing) and towers' initial states are
    drawn once per seed.
    """
    from .tower_layers import TowerEndings, TowerOptimizer, TowerSchedules

    kinds = {spec.name for spec in optimizers}
    if len(kinds) != 1 or len(optimizers) != len(towers):
        raise ValueError("fused towers need one optimizer setting per tower, all of one kind")
    cache = cache or ModelCache()
    X, y = np.asarray(X), np.asarray(y)
    fold_rows = [np.asarray(rows) for rows in folds] if folds is not None else [np.arange(len(X))]
    n_folds, n_features = len(fold_rows), X.shape[1]
    labels = [y[rows] for rows in fold_rows]
    if task == "classification":
        classes = np.unique(np.concatenate(labels))
        if any(len(np.unique(fold_labels)) != len(classes) for fold_labels in labels):
            raise ValueError("folds with different classes cannot share a program (their models differ)")
        targets, n_outputs, output_activation = np.searchsorted(classes, y), len(classes), "softmax"
    else:
        classes, targets, n_outputs, output_activation = None, y.astype("float32"), 1, "linear"
    data = fold_batches(X, targets, fold_rows, validation_split=validation_split, batch_size=batch_size, shuffle=shuffle,
                        seed=seed, seeding=seeding)
    if start is None:
        states = [cache.initial_state((tower, n_features, n_outputs, output_activation, seed),
                                      lambda tower=tower: initial_state(tower, n_features, n_outputs,
                                                                        output_activation, seed, seeding))
                  for tower in towers]
    elif len(start) != len(towers) or len({state.epochs for state in start}) != 1:
        raise ValueError("continued towers need one state per tower, all after the same number of epochs")
    # what a program is built for: the towers but their initial weights and dropout rates (whether
    # a tower drops units is the program's; how many, a setting of it)
    shapes = tuple(tower.model_copy(update={"init_mode": "", "bias_init": "", "dropout": tower.dropout > 0})
                   for tower in towers)
    kind = kinds.pop()
    schedules = schedules or [ScheduleSpec()] * len(towers)
    program = TowerOptimizer.program_for(optimizers, schedules)
    model, _ = cache.fused((shapes, n_folds, n_features, n_outputs, task, kind, steps_per_execution,
                            tuple(program.items())),
                           lambda: build_fused_model(towers, n_features, n_outputs, task=task, optimizer=kind,
                                                     folds=n_folds, steps_per_execution=steps_per_execution,
                                                     program=program))
    model.optimizer.reset()
    model.optimizer.set_towers(optimizers)
    set_dropout_rates(model, towers)
    if start is None:
        set_initial_state(model, states)
    else:
        continue_from(model, start)
    initial_epoch = start[0].epochs if start else 0
    schedule = TowerSchedules([epoch_schedule(spec, optimizer) for spec, optimizer in zip(schedules, optimizers)])
    tower_epochs = [epochs] * len(towers) if isinstance(epochs, int) else list(epochs)
    def solo_model(tower, optimizer):  # a tower's solo model to save its file through (zeros: it draws nothing)
        return lambda: build_model(tower.model_copy(update={"init_mode": "zeros", "bias_init": "zeros"}),
                                   n_features=n_features, n_outputs=n_outputs, output_activation=output_activation,
                                   optimizer=optimizer, clear_session=False)

    if any(epochs <= initial_epoch for epochs in tower_epochs):
        raise ValueError("a continued tower must train more epochs than its state has")
    endings = TowerEndings(towers, tower_epochs, early_stopping or [None] * len(towers), score_on, checkpoints,
                           [solo_model(tower, optimizer) for tower, optimizer in zip(towers, optimizers)],
                           keep_states=keep_states)
    with seeding(seed) if seeding is not None and seed is not None else nullcontext():
        history = model.fit(data.x, data.y, batch_size=batch_size, epochs=max(tower_epochs),
                            initial_epoch=initial_epoch, validation_data=data.validation, shuffle=False,
                            callbacks=[schedule, endings, *callbacks], verbose=0)
    histories = []
    for t, tower in enumerate(tower_histories(history.history, len(towers), task)):
        before = start[t].history if start else {}
        trained = endings.ended.get(t, initial_epoch + len(history.epoch)) - initial_epoch
        histories.append({name: before.get(name, []) + values[:trained] for name, values in tower.items()})
    states = {t: replace(state, history=histories[t]) for t, state in endings.states.items()}
    return FittedTowers(model, histories, task, classes, endings.taken, states)


def epoch_schedule(schedule: ScheduleSpec, optimizer: OptimizerSpec) -> Callable[[int], float] | None:
    """`epoch -> rate` as the solo fit's `EpochSchedule` computes it (from the optimizer's rate
    as a float32 variable holds it), or None without a schedule."""
    if schedule.name == "none":
        return None
    if optimizer.decay:
        raise ValueError(f"learning-rate schedule {schedule.name!r} cannot be combined with optimizer decay")
    return schedule_function(schedule.name, float(np.float32(optimizer.learning_rate)), **schedule.kwargs())


def dense_layers(model) -> list:
    from .tower_layers import TowerDense

    return [layer for layer in model.layers if isinstance(layer, TowerDense)]


def tower_histories(history: dict[str, list[float]], n_towers: int, task: str) -> list[dict[str, list[float]]]:
    """Keras' fused history split per tower, under the names a solo fit logs (loss, accuracy, val_*)."""
    names = [f"{prefix}{name}" for prefix in ("", "val_")
             for name in ["loss"] + (["accuracy"] if task == "classification" else [])] + ["learning_rate"]
    return [{name: [float(v) for v in history[f"{name}_{t}"]] for name in names if f"{name}_{t}" in history}
            for t in range(n_towers)]
