"""What the project relies on from scikeras 0.13, pinned against plain `scikeras.wrappers`.

Only `pipeline/tuning/estimator.py` imports scikeras (an import-linter contract checks it), and
these are the behaviours it and the fused engine build on. If an upgrade, or a move to Keras'
own `keras.wrappers.SKLearnClassifier`, changes one of them, a test here says which.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.runtime import keras as load_keras

K = load_keras()  # TensorFlow loaded quietly, before scikeras imports it
from scikeras.utils.random_state import tensorflow_random_state  # noqa: E402
from scikeras.wrappers import KerasClassifier  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.random((60, 4)).astype("float32")
Y = np.array(["b", "a", "c"] * 20)


def _network(meta, width: int):
    model = K.Sequential([K.Input((meta["n_features_in_"],)), K.layers.Dense(width, activation="relu"),
                          K.layers.Dense(meta["n_classes_"], activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _classifier(model, **params):
    return KerasClassifier(model=model, loss="sparse_categorical_crossentropy", optimizer="sgd", epochs=2,
                           validation_split=0.2, random_state=3, verbose=0, **params)


def test_build_function_gets_routed_model_params_meta_and_params_only():
    """`_build_for_scikeras` names `meta`, `params` and the network's fields: scikeras passes it
    `model__*` values by name and the data's shape in `meta`, and, without `compile_kwargs` in
    the signature, does not build an optimizer of its own from `optimizer__*`."""
    seen = {}

    def build(meta, params, *, width=None):
        seen.update(meta=meta, params=params, width=width)
        return _network(meta, width)

    def build_any(**kwargs):
        seen["any"] = sorted(kwargs)
        return _network(kwargs["meta"], 3)

    _classifier(build, model__width=5, optimizer__learning_rate=0.05).fit(X, Y)
    assert seen["width"] == 5
    meta = seen["meta"]
    assert (meta["n_features_in_"], meta["n_classes_"], meta["target_type_"]) == (4, 3, "multiclass")
    assert list(meta["classes_"]) == ["a", "b", "c"]
    assert seen["params"]["optimizer__learning_rate"] == 0.05 and seen["params"]["loss"] == "sparse_categorical_crossentropy"
    _classifier(build_any).fit(X, Y)
    assert seen["any"] == ["compile_kwargs", "meta", "params"]  # why the adapter's signature names its fields


def test_routing_prefixes_and_fit_callbacks_are_extensible():
    """The wrappers add their prefixes to `_routing_prefixes` and their per-fit callbacks to
    `_fit_callbacks` in `_initialize_callbacks`; Keras' fit must receive them."""
    assert {"model", "optimizer", "compile", "fit", "predict"} <= KerasClassifier._routing_prefixes
    epochs_seen = []

    class Counting(K.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epochs_seen.append(epoch)

    class WithCallbacks(KerasClassifier):
        def _initialize_callbacks(self):
            super()._initialize_callbacks()
            self._fit_callbacks = list(self._fit_callbacks) + [Counting()]

    estimator = WithCallbacks(model=lambda meta: _network(meta, 4), loss="sparse_categorical_crossentropy",
                              optimizer="sgd", epochs=3, random_state=1, verbose=0, validation_split=0.2)
    estimator.fit(X, Y)
    assert epochs_seen == [0, 1, 2]
    assert sorted(estimator.history_) == ["accuracy", "loss", "val_accuracy", "val_loss"]


def test_labels_are_encoded_as_sorted_class_indices():
    """Fused towers encode labels themselves (`np.searchsorted` on the sorted classes): the
    same integers scikeras' target encoder gives a solo fit."""
    estimator = _classifier(lambda meta: _network(meta, 4)).fit(X, Y)
    encoded = np.asarray(estimator.target_encoder_.transform(Y)).ravel()
    np.testing.assert_array_equal(encoded, np.searchsorted(np.unique(Y), Y))
    np.testing.assert_array_equal(estimator.classes_, ["a", "b", "c"])


def test_a_fit_is_built_and_trained_under_tensorflow_random_state():
    """A solo fit with `random_state` builds its model and runs Keras' fit under
    `tensorflow_random_state(random_state)`; fused towers reproduce solo fits by doing the same
    (`pipeline.tuning.estimator.seeding`)."""
    from pipeline.tuning.estimator import seeding

    assert seeding is tensorflow_random_state
    estimator = _classifier(lambda meta: _network(meta, 6), batch_size=8).fit(X, Y)
    with tensorflow_random_state(3):
        by_hand = _network({"n_features_in_": 4, "n_classes_": 3}, 6)
    with tensorflow_random_state(3):
        by_hand.fit(X, estimator.target_encoder_.transform(Y), batch_size=8, epochs=2, validation_split=0.2,
                    shuffle=True, verbose=0)
    for ours, theirs in zip(by_hand.get_weights(), estimator.model_.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
