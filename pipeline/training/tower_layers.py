"""The Keras pieces of a fused model: T Dense layers side by side, per-tower dropout, per-tower
losses and metrics. Importing this module loads TensorFlow; `pipeline.training.towers` imports it
only when a fused model is built.
"""

from __future__ import annotations

import numpy as np

from ..core.runtime import keras as _keras

keras = _keras()


def tower_targets(y_true, n_towers: int, folds: int, part: int = 0):
    """(batch, towers) each tower's target (`part` 0) or its weight (`part` 1): `y_true` is
    (batch, folds, 2), [target, weight] per fold (see `pipeline.training.fold_batches`), and the
    towers are fold-major (the first towers/folds towers train on fold 0, and so on)."""
    return keras.ops.repeat(y_true[:, :, part], n_towers // folds, axis=1)


def per_tower_loss(task: str, folds: int, y_true, y_pred):
    """(batch, towers) losses, unweighted: cross-entropy (from the softmax's logits, as Keras does
    for one model) or mean squared error. `y_pred` is (batch, towers, outputs)."""
    targets = tower_targets(y_true, y_pred.shape[1], folds)
    if task == "classification":
        return keras.losses.sparse_categorical_crossentropy(keras.ops.cast(targets, "int32"), y_pred)
    target = keras.ops.expand_dims(keras.ops.cast(targets, y_pred.dtype), -1)
    return keras.ops.mean(keras.ops.square(target - y_pred), axis=-1)


def summed_loss(task: str, folds: int):
    """Per sample: the towers' weighted losses summed, so Keras' batch mean gives the sum over
    towers of each tower's own batch-mean loss (and each tower its own gradient; padding and the
    weights of a shorter fold's last batch in `pipeline.training.fold_batches`)."""
    def loss(y_true, y_pred):
        weights = tower_targets(y_true, y_pred.shape[1], folds, part=1)
        return keras.ops.sum(per_tower_loss(task, folds, y_true, y_pred) * weights, axis=1)

    return loss


class TowerDense(keras.layers.Layer):
    """T Dense layers side by side. The first takes the input (batch, F, in), F folds' samples
    side by side, and holds an (F, in, C, out) kernel for the C = T/F towers of each fold, used
    as one (in, C*out) matrix per fold (on (batch, 1, in), the same samples for every fold's
    towers, as one (in, T*out) matrix); later ones take (T, batch, in) and hold (T, in, out)
    kernels (a batched product). The last returns (batch, T, out). Towers are fold-major:
    tower t = f*C + c."""

    def __init__(self, towers, index, n_in, n_out, activations, output_activation, folds=1, **kwargs):
        super().__init__(**kwargs)
        self.shared_input = index == 0
        self.n_towers, self.n_in, self.n_out, self.folds = len(towers), n_in, n_out, folds
        self.per_fold = self.n_towers // folds
        self.activations = activations
        self.output_activation = output_activation
        in_sizes = [n_in if index == 0 else t.hidden_layers[index - 1] for t in towers]
        out_sizes = [t.hidden_layers[index] if index < len(t.hidden_layers) else n_out for t in towers]
        self.mask = None
        if len(set(in_sizes)) > 1 or len(set(out_sizes)) > 1:  # zero-padded narrower towers
            mask = np.zeros((len(towers), n_in, n_out), dtype="float32")
            for t, (rows, cols) in enumerate(zip(in_sizes, out_sizes)):
                mask[t, :rows, :cols] = 1.0
            self.mask = self.stacked(mask) if self.shared_input else mask
        self.penalties = np.array([[t.l1, t.l2, t.bias_l1, t.bias_l2] for t in towers], dtype="float32")

    def stacked(self, per_tower: np.ndarray) -> np.ndarray:
        """(T, in, out) per-tower matrices in the first layer's (F, in, C, out) layout."""
        return per_tower.reshape(self.folds, self.per_fold, self.n_in, self.n_out).transpose(0, 2, 1, 3)

    def tower_shape(self, variable) -> tuple[int, ...]:
        """The shape a (T,) per-tower vector takes to broadcast over `variable` (kernel or bias)."""
        if variable is self.kernel and self.shared_input:
            return (self.folds, 1, self.per_fold, 1)
        return (self.n_towers,) + (1,) * (len(variable.shape) - 1)

    def tower_slice(self, tower: int, rows: int, cols: int) -> tuple:
        """Where tower `tower`'s (rows, cols) kernel lives in this layer's kernel."""
        if self.shared_input:
            fold, member = divmod(tower, self.per_fold)
            return fold, slice(0, rows), member, slice(0, cols)
        return tower, slice(0, rows), slice(0, cols)

    def build(self, input_shape):
        shape = (self.folds, self.n_in, self.per_fold, self.n_out) if self.shared_input \
            else (self.n_towers, self.n_in, self.n_out)
        penalised = self.penalties.any()  # the regularizer puts each tower's penalty into the training loss
        self.kernel = self.add_weight(shape=shape, initializer="zeros", name="kernel",
                                      regularizer=self._record_penalty if penalised else None)
        self.bias = self.add_weight(shape=(self.n_towers, self.n_out), initializer="zeros", name="bias")
        # Each tower's penalty as the loss saw it, before the update (what a solo fit reports).
        self.recorded_penalty = self.add_weight(shape=(self.n_towers,), initializer="zeros", trainable=False,
                                                name="recorded_penalty")

    def _record_penalty(self, _kernel):
        penalty = self.kernel_penalty() + self.bias_penalty()
        self.recorded_penalty.assign(penalty)
        return keras.ops.sum(penalty)

    def kernel_penalty(self):
        """(T,) each tower's kernel L1/L2 penalty, as Keras' L1L2 regularizer computes it."""
        ops, p = keras.ops, self.penalties
        axes = (1, 3) if self.shared_input else (1, 2)

        def per_tower(values):
            return ops.reshape(ops.sum(values, axis=axes), (self.n_towers,))

        return p[:, 0] * per_tower(ops.abs(self.kernel)) + p[:, 1] * per_tower(ops.square(self.kernel))

    def bias_penalty(self):
        ops, p = keras.ops, self.penalties
        return p[:, 2] * ops.sum(ops.abs(self.bias), axis=1) + p[:, 3] * ops.sum(ops.square(self.bias), axis=1)

    def penalty(self):
        """(T,) each tower's total penalty in the last loss computed (zeros without regularization)."""
        return self.recorded_penalty.value

    def call(self, inputs):
        ops = keras.ops
        kernel = self.kernel if self.mask is None else self.kernel * self.mask
        if self.shared_input and inputs.shape[1] == 1:  # the same samples for every tower: one plain product
            flat = ops.matmul(ops.reshape(inputs, (-1, self.n_in)),  # (batch, in) @ (in, F*C*out)
                              ops.reshape(ops.transpose(kernel, (1, 0, 2, 3)), (self.n_in, self.n_towers * self.n_out)))
            outputs = ops.transpose(ops.reshape(flat, (-1, self.n_towers, self.n_out)), (1, 0, 2))
        elif self.shared_input:  # each fold's own samples: one product per fold, (F, batch, in) @ (F, in, C*out)
            folds, width = self.folds, self.per_fold * self.n_out
            flat = ops.matmul(ops.transpose(inputs, (1, 0, 2)), ops.reshape(kernel, (folds, self.n_in, width)))
            outputs = ops.reshape(ops.transpose(ops.reshape(flat, (folds, -1, self.per_fold, self.n_out)), (0, 2, 1, 3)),
                                  (self.n_towers, -1, self.n_out))
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
    excluded) and own random stream, i.e. the draws of the tower's solo Dropout layer.

    Row t of `seeds` is the state ([seed, counter]) of that solo layer's `SeedGenerator`: one
    read and one update serve every tower at each step, then one draw per dropping tower, seeded
    as Keras' TensorFlow backend seeds `keras.random.uniform`. (In an ad-hoc measurement, a
    generator per tower, each with its own small operations at every step, made a 12-tower
    program's first fit about 1 s slower to trace and run than the same program without
    dropout.)"""

    def __init__(self, rates, widths, **kwargs):
        super().__init__(**kwargs)
        self.rates, self.widths = [float(r) for r in rates], [int(w) for w in widths]
        self.drops = [rate > 0 for rate in self.rates]  # what the program's structure depends on

    def build(self, input_shape):
        self.seeds = self.add_weight(shape=(len(self.rates), 2), dtype="int64", initializer="zeros", trainable=False,
                                     name="seeds")  # int64: the dtype of a SeedGenerator's state here
        # a solo layer draws (its counter moves on) only when it drops something
        self.advance = np.array([[0, 1 if drops else 0] for drops in self.drops], dtype="int64")
        # (T, 1, 1) variables, so that one program serves other rates: a unit is kept where its
        # uniform draw is >= its tower's rate, then scaled
        self.keep_from = self.add_weight(shape=(len(self.rates), 1, 1), dtype="float32", initializer="zeros",
                                         trainable=False, name="keep_from")
        self.scale = self.add_weight(shape=(len(self.rates), 1, 1), dtype="float32", initializer="ones",
                                     trainable=False, name="scale")
        self.set_rates(self.rates)

    def set_rates(self, rates) -> None:
        """Give the towers these dropout rates (each dropping, or not, as the program was built)."""
        if [rate > 0 for rate in rates] != self.drops:
            raise ValueError("a program drops units in the towers it was built to drop them in; these towers "
                             "need another program")
        self.rates = [float(r) for r in rates]
        self.keep_from.assign(np.array(self.rates, dtype="float32")[:, None, None])
        self.scale.assign(np.array([1.0 / (1.0 - rate) if rate > 0 else 1.0 for rate in self.rates],
                                   dtype="float32")[:, None, None])

    def call(self, inputs, training=False):
        if not training:
            return inputs
        import tensorflow as tf

        ops, width = keras.ops, inputs.shape[-1]
        batch = ops.shape(inputs)[1]
        seeds = self.seeds.value * 1  # what each solo layer's `SeedGenerator.next()` returns
        self.seeds.assign(seeds + self.advance)
        drawn = ops.cast(tf.math.floormod(seeds, tf.int32.max - 1), "int32")  # Keras' `_cast_seed`
        draws = []  # per tower: (batch, width) uniforms; padding columns never kept, towers without dropout always
        for t, (drops, units) in enumerate(zip(self.drops, self.widths)):
            if drops:
                uniform = tf.random.stateless_uniform((batch, units), minval=tf.cast(0.0, "float32"),
                                                      maxval=tf.cast(1.0, "float32"), dtype="float32", seed=drawn[t])
            else:
                uniform = ops.ones((batch, units), "float32")
            draws.append(uniform if units == width else ops.pad(uniform, ((0, 0), (0, width - units)),
                                                                 constant_values=-1.0))
        mask = ops.cast(ops.stack(draws) >= self.keep_from.value, inputs.dtype) * self.scale.value
        return inputs * mask


class TowerMetrics(keras.metrics.Metric):
    """Each tower's epoch loss (penalties included, as Keras reports them) and accuracy,
    logged as `loss_<t>` / `accuracy_<t>` (and `val_` ones on validation data)."""

    def __init__(self, n_towers, folds, task, dense_layers, **kwargs):
        super().__init__(name="towers", **kwargs)
        self.n_towers, self.folds, self.task = n_towers, folds, task
        object.__setattr__(self, "dense_layers", tuple(dense_layers))  # read, not tracked, by the metric
        self.loss_sum = self.add_variable(shape=(n_towers,), initializer="zeros", name="loss_sum")
        self.correct = self.add_variable(shape=(n_towers,), initializer="zeros", name="correct")
        self.count = self.add_variable(shape=(n_towers,), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        ops = keras.ops
        real = ops.cast(tower_targets(y_true, self.n_towers, self.folds, part=1) > 0, "float32")  # not padding
        samples = ops.sum(real, axis=0)
        self.loss_sum.assign_add(ops.sum(per_tower_loss(self.task, self.folds, y_true, y_pred) * real, axis=0))
        penalties = [layer.penalty() for layer in self.dense_layers if layer.penalties.any()]
        if penalties:
            self.loss_sum.assign_add(ops.sum(ops.stack(penalties), axis=0) * samples)
        if self.task == "classification":
            predicted = ops.argmax(y_pred, axis=-1)
            labels = ops.cast(tower_targets(y_true, self.n_towers, self.folds), predicted.dtype)
            self.correct.assign_add(ops.sum(ops.cast(predicted == labels, "float32") * real, axis=0))
        self.count.assign_add(samples)

    def result(self):
        loss = self.loss_sum / keras.ops.maximum(self.count, 1.0)
        result = {f"loss_{t}": loss[t] for t in range(self.n_towers)}
        if self.task == "classification":
            accuracy = self.correct / keras.ops.maximum(self.count, 1.0)
            result.update({f"accuracy_{t}": accuracy[t] for t in range(self.n_towers)})
        return result


def tower_hyperparameters(optimizers) -> dict[str, list[float]]:
    """Each `TowerOptimizer` hyperparameter's value per tower (an `OptimizerSpec` each), Keras'
    defaults where a spec leaves one out."""
    defaults = {"momentum": 0.0, "nesterov": False, "rho": 0.9, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
    values: dict[str, list[float]] = {name: [] for name in TowerOptimizer.HYPERPARAMETERS}
    for spec in optimizers:
        args = {**defaults, **spec.specific_args()}
        values["rates"].append(spec.learning_rate)
        values["decays"].append(spec.decay)
        for name in ("momentum", "rho", "beta_1", "beta_2", "epsilon"):
            values[name].append(args[name])
        values["nesterov"].append(float(bool(args["nesterov"])))
        for name in ("rho", "beta_1", "beta_2"):
            values[f"one_minus_{name}"].append(1 - args[name])  # in float64, as Python computes it for Keras
    return values


class TowerOptimizer(keras.optimizers.Optimizer):
    """SGD, RMSprop or Adam over stacked tower variables, with every hyperparameter per tower.

    Each hyperparameter is a (T,) vector broadcast along a variable's tower axes, so tower t is
    updated with exactly the arithmetic Keras' own optimizer applies to a solo model: the same
    formulas in the same order, float32 constants rounded as Keras rounds its Python floats
    (`1 - rho` is computed in float64, then rounded), time-based decay as Keras'
    `InverseTimeDecay(decay_steps=1)`. Values are variables, so one compiled program serves any
    settings (`set_towers`); an epoch schedule sets `rates` per tower between epochs.

    Two cheaper programs for common searches, with the same arithmetic per weight: `shared`
    (every tower has the same settings and schedule, e.g. a grid over initializers) multiplies
    by scalars, which on this CPU costs about half a broadcast multiply over a stacked kernel;
    without `momentum` (no tower has any) the momentum slot is left out of the updates, as Keras
    leaves it out of a solo optimizer's.
    """

    HYPERPARAMETERS = ("rates", "decays", "momentum", "nesterov", "rho", "one_minus_rho", "beta_1", "one_minus_beta_1",
                       "beta_2", "one_minus_beta_2", "epsilon")

    def __init__(self, kind: str, n_towers: int, tower_shapes: dict[str, tuple[int, ...]], shared: bool = False,
                 momentum: bool = True, **kwargs):
        super().__init__(learning_rate=0.0, name=f"tower_{kind}", **kwargs)
        self.kind, self.n_towers, self.tower_shapes = kind, n_towers, dict(tower_shapes)
        self.shared, self.momentum = shared, momentum

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.hyper = {name: self.add_variable((self.n_towers,), name=name) for name in self.HYPERPARAMETERS}
        # per variable index: the shape a (T,) vector takes along the variable's tower axes
        self.broadcast_shapes = [self.tower_shapes[variable.path] for variable in variables]
        slots = {"sgd": ("momentum",), "rmsprop": ("velocity", "momentum"), "adam": ("momentum", "velocity")}[self.kind]
        self.slots = {name: [self.add_variable_from_reference(v, name) for v in variables] for name in slots}

    def set_towers(self, optimizers) -> None:
        """Each tower's `OptimizerSpec` (all of `kind`), which must fit this program (`program_for`)."""
        values = tower_hyperparameters(optimizers)
        if (self.shared and any(len(set(vector)) > 1 for vector in values.values())) or \
                (not self.momentum and any(values["momentum"])):
            raise ValueError("these optimizer settings need another fused program (see TowerOptimizer.program_for)")
        for name, vector in values.items():
            self.hyper[name].assign(np.asarray(vector, dtype="float64").astype("float32"))

    @staticmethod
    def program_for(optimizers, schedules) -> dict[str, bool]:
        """The cheapest program (`shared`, `momentum`) that trains towers with these settings and schedules."""
        values = tower_hyperparameters(optimizers)
        shared = len({spec.model_dump_json() for spec in optimizers}) == 1 \
            and len({spec.model_dump_json() for spec in schedules}) == 1
        return {"shared": shared, "momentum": any(values["momentum"])}

    def reset(self) -> None:
        """Zero iterations and every slot: the next fit starts like one on a new optimizer."""
        self.iterations.assign(0)
        for variables in self.slots.values():
            for variable in variables:
                variable.assign(keras.ops.zeros_like(variable))

    def tower_rates(self):
        """(T,) the rate each tower applies at the next update (time decay at `iterations`)."""
        step = keras.ops.cast(self.iterations, "float32")
        return self.hyper["rates"] / (1.0 + self.hyper["decays"] * step)

    def update_step(self, gradient, variable, learning_rate):
        ops = keras.ops
        index = self._get_variable_index(variable)

        def along_towers(vector):  # a (T,) vector along this variable's tower axes, or its one value
            return vector[0] if self.shared else ops.reshape(vector, self.broadcast_shapes[index])

        def h(name):
            return along_towers(self.hyper[name])

        lr = along_towers(self.tower_rates())
        gradient = ops.cast(gradient, variable.dtype)
        if self.kind == "sgd" and not self.momentum:
            self.assign_sub(variable, ops.multiply(gradient, lr))
        elif self.kind == "sgd":
            m = self.slots["momentum"][index]
            self.assign(m, ops.subtract(ops.multiply(m, h("momentum")), ops.multiply(gradient, lr)))
            nesterov_step = ops.subtract(ops.multiply(m, h("momentum")), ops.multiply(gradient, lr))
            self.assign_add(variable, ops.where(h("nesterov") > 0, nesterov_step, m))
        elif self.kind == "rmsprop":
            velocity, momentum = self.slots["velocity"][index], self.slots["momentum"][index]
            self.assign(velocity, ops.add(ops.multiply(h("rho"), velocity),
                                          ops.multiply(h("one_minus_rho"), ops.square(gradient))))
            increment = ops.divide(ops.multiply(lr, gradient), ops.sqrt(ops.add(velocity, h("epsilon"))))
            if self.momentum:
                self.assign(momentum, ops.add(ops.multiply(h("momentum"), momentum), increment))
                self.assign_sub(variable, momentum)
            else:
                self.assign_sub(variable, increment)
        else:
            m, v = self.slots["momentum"][index], self.slots["velocity"][index]
            local_step = ops.cast(self.iterations + 1, variable.dtype)
            beta_1_power, beta_2_power = ops.power(h("beta_1"), local_step), ops.power(h("beta_2"), local_step)
            alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
            self.assign_add(m, ops.multiply(ops.subtract(gradient, m), h("one_minus_beta_1")))
            self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), h("one_minus_beta_2")))
            self.assign_sub(variable, ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), h("epsilon"))))


class TowerSchedules(keras.callbacks.Callback):
    """Each tower's epoch schedule (or none) and its learning rate in the logs as `learning_rate_<t>`:
    the rates each tower's own `EpochSchedule` and `LearningRateLogger` would set and log."""

    def __init__(self, functions):
        super().__init__()
        self.functions = list(functions)  # per tower: epoch -> rate, or None (the optimizer's own rate)

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        if any(self.functions):
            rates = keras.ops.convert_to_numpy(optimizer.hyper["rates"]).astype("float64")
            for t, function in enumerate(self.functions):
                if function is not None:
                    rates[t] = float(function(epoch))
            optimizer.hyper["rates"].assign(rates.astype("float32"))
        self._rates = [float(rate) for rate in keras.ops.convert_to_numpy(optimizer.tower_rates())]

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update({f"learning_rate_{t}": rate for t, rate in enumerate(self._rates)})


class TowerView:
    """What one tower's own Keras `EarlyStopping` and `ModelCheckpoint` see as their model: the
    tower's weights (cut from and written back into its slices of the fused model), a stop flag
    of its own, and `save_weights` writing the file its solo fit would write: weights and
    optimizer state, through the solo model `solo()` builds."""

    metrics: tuple = ()  # EarlyStopping is given its mode, so it never looks for metric directions

    def __init__(self, model, towers, tower: int, solo=None):
        self.fused, self.towers, self.tower, self.solo = model, towers, tower, solo
        self.stop_training = False

    def save_weights(self, filepath, overwrite=True):
        from .towers import copy_optimizer_state

        model = self.solo()
        model.set_weights(self.get_weights())
        copy_optimizer_state(self.fused, self.towers, self.tower, model)
        model.save_weights(filepath, overwrite=overwrite)

    def get_weights(self):
        from .towers import tower_values

        return tower_values(self.fused, self.towers, self.tower, np.asarray)

    def set_weights(self, weights):
        from .towers import set_tower_weights

        set_tower_weights(self.fused, self.towers, self.tower, weights)


class TowerEndings(keras.callbacks.Callback):
    """Where each tower's solo fit would end: after its own number of epochs (epochs as a shared
    prefix) or when its own EarlyStopping stops it (Keras' callback, run on the tower's logs
    through a `TowerView`, restoring the tower's best weights as it would). Then its outputs on
    the arrays to score are kept (`taken[tower][id(array)]`) and `ended[tower]` is the epoch
    count its history is cut at; once every tower has ended, the program stops. A tower with a
    checkpoint gets Keras' own `ModelCheckpoint` on its logs, which saves its best weights as
    its solo model's weights file (`solo_models[tower]()` builds that model). With
    `keep_states`, `states[tower]` is where a tower ended by its epochs stood (see
    `pipeline.training.towers.TowerState`), unless early stopping or a checkpoint watch it."""

    def __init__(self, towers, tower_epochs, early_stopping, arrays, checkpoints=None, solo_models=None,
                 keep_states=False):
        super().__init__()
        self.keep_states = keep_states
        self.states = {}
        self.towers, self.tower_epochs, self.arrays = list(towers), list(tower_epochs), list(arrays)
        self.early_stopping = list(early_stopping)  # per tower: an EarlyStoppingSpec, or None
        self.checkpoints = list(checkpoints or [None] * len(self.towers))  # per tower: (CheckpointSpec, path) or None
        self.solo_models = solo_models
        self.taken: dict[int, dict[int, np.ndarray]] = {}
        self.ended: dict[int, int] = {}

    def on_train_begin(self, logs=None):
        self.stoppers = {}
        for t, spec in enumerate(self.early_stopping):
            if spec is not None and spec.enabled:
                stopper = keras.callbacks.EarlyStopping(mode="max" if "accuracy" in spec.monitor else "min",
                                                        **spec.kwargs())
                stopper.set_model(TowerView(self.model, self.towers, t))
                stopper.on_train_begin()
                self.stoppers[t] = stopper
        self.savers = {}
        for t, checkpoint in enumerate(self.checkpoints):
            if checkpoint is not None and checkpoint[0].enabled:
                spec, path = checkpoint
                saver = keras.callbacks.ModelCheckpoint(str(path), save_best_only=True, save_weights_only=True,
                                                        **spec.kwargs())
                saver.set_model(TowerView(self.model, self.towers, t, solo=self.solo_models[t]))
                self.savers[t] = saver

    def on_epoch_end(self, epoch, logs=None):
        from .towers import predict_towers

        ending = []
        for t, last in enumerate(self.tower_epochs):
            if t in self.ended:
                continue
            tower_logs = {name.rsplit("_", 1)[0]: value for name, value in (logs or {}).items()
                          if name.endswith(f"_{t}")}
            if t in self.savers:
                self.savers[t].on_epoch_end(epoch, tower_logs)
            stopper = self.stoppers.get(t)
            if stopper is not None:
                stopper.on_epoch_end(epoch, tower_logs)
            if epoch + 1 == last or (stopper is not None and stopper.model.stop_training):
                if stopper is not None:
                    stopper.on_train_end()  # restores the tower's best weights, as Keras does
                elif self.keep_states and t not in self.savers:
                    from .towers import tower_state

                    self.states[t] = tower_state(self.model, self.towers, t, epoch + 1)
                ending.append(t)
                self.ended[t] = epoch + 1
        if ending:
            outputs = {id(array): predict_towers(self.model, array) for array in self.arrays}
            for t in ending:
                self.taken[t] = {key: value[:, t, :] for key, value in outputs.items()}
        if len(self.ended) == len(self.towers):
            self.model.stop_training = True
