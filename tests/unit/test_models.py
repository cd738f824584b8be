"""The model factory and optimizers: construction without training, the decay formula, the vocabulary."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from pipeline.core.runtime import keras as _keras
from pipeline.spec import vocabulary as hp
from pipeline.spec.vocabulary import NetworkSpec, OptimizerSpec
from pipeline.training.factory import build_model, build_optimizer, current_learning_rate
from pipeline.training.schedules import time_decay

keras = _keras()


def test_factory_builds_the_tutorial_network():
    model = build_model(n_features=784, n_outputs=10, hidden_layers=(64, 64), dropout=0.1, init_mode="he_uniform",
                        optimizer=OptimizerSpec(name="rmsprop", learning_rate=0.001))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Dense", "Dropout", "Dense", "Dropout", "Dense"]
    assert [layer.units for layer in model.layers if hasattr(layer, "units")] == [64, 64, 10]
    assert model.count_params() == 784 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10
    assert all(type(l.kernel_initializer).__name__ == "HeUniform" for l in model.layers if hasattr(l, "units"))
    assert type(model.optimizer).__name__ == "RMSprop" and model.layers[-1].activation.__name__ == "softmax"


def test_zeros_initializer_gives_all_zero_weights_and_regularizers_apply():
    model = build_model(n_features=4, n_outputs=3, hidden_layers=(5,), init_mode="zeros", l2=0.01, bias_l1=0.1)
    assert all(not np.any(w) for w in model.get_weights())
    dense = model.layers[0]
    assert dense.kernel_regularizer.l2 == pytest.approx(0.01) and dense.bias_regularizer.l1 == pytest.approx(0.1)
    assert build_model(n_features=4, n_outputs=3).layers[0].kernel_regularizer is None


def test_time_decay_learning_rate_after_k_updates_matches_formula():
    optimizer = build_optimizer(OptimizerSpec(name="sgd", learning_rate=0.1, decay=0.0016, momentum=0.8, nesterov=True))
    variable = keras.Variable(np.ones(3, dtype="float32"))
    for _ in range(250):
        optimizer.apply_gradients([(keras.ops.ones(3), variable)])
    assert int(optimizer.iterations) == 250
    assert current_learning_rate(optimizer) == pytest.approx(time_decay(250, 0.1, 0.0016), rel=1e-6)
    assert optimizer.momentum == pytest.approx(0.8) and optimizer.nesterov


@pytest.mark.parametrize("name, kwargs, attribute, value", [
    ("rmsprop", {"rho": 0.8, "epsilon": 1e-6}, "rho", 0.8),
    ("adam", {"beta_1": 0.85, "beta_2": 0.99}, "beta_2", 0.99),
])
def test_rmsprop_and_adam_take_their_arguments_and_decay(name, kwargs, attribute, value):
    optimizer = build_optimizer(OptimizerSpec(name=name, learning_rate=0.01, decay=0.5, **kwargs))
    assert getattr(optimizer, attribute) == pytest.approx(value)
    assert isinstance(optimizer._learning_rate, keras.optimizers.schedules.InverseTimeDecay)


def test_foreign_optimizer_arguments_are_rejected():
    with pytest.raises(ValueError, match="optimizer argument 'momentum' does not apply to adam"):
        OptimizerSpec(name="adam", momentum=0.9)
    with pytest.raises(ValueError, match="unknown optimizer"):
        OptimizerSpec(name="adadelta")
    with pytest.raises(ValueError, match="unknown initializer .nope."):
        build_model(n_features=2, n_outputs=2, init_mode="nope")
    with pytest.raises(TypeError, match="not both"):
        build_model(NetworkSpec(), n_features=2, n_outputs=2, dropout=0.1)


def test_vocabulary_matches_keras_and_the_estimator():
    """Every name of the vocabulary is one Keras knows; every optimizer argument is one the Keras
    optimizer takes; the estimator's build function routes exactly the network's fields."""
    for name in hp.INITIALIZERS:
        keras.initializers.get(name)
    for name in hp.ACTIVATIONS:
        keras.activations.get(name)
    classes = {"sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam}
    for name, args in hp.OPTIMIZER_ARGS.items():
        assert set(args) <= set(inspect.signature(classes[name]).parameters)
    from pipeline.tuning.estimator import _build_for_scikeras

    adapter = set(inspect.signature(_build_for_scikeras).parameters) - {"meta", "params"}
    assert adapter == set(NetworkSpec.model_fields) == set(hp.NETWORK.fields())
    searchable = hp.searchable()
    assert {f"optimizer__{arg}" for args in hp.OPTIMIZER_ARGS.values() for arg in args} <= set(searchable)
    assert {f"model__{field}" for field in NetworkSpec.model_fields} <= set(searchable)


def test_building_many_models_does_not_accumulate_layer_names():
    names = {build_model(n_features=3, n_outputs=2, hidden_layers=(4,)).layers[0].name for _ in range(5)}
    assert names == {"dense"}  # the session is cleared before each build
