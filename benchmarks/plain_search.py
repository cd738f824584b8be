"""The baseline: a config's search written plainly with scikeras + scikit-learn, as the seed tutorial does.

The candidates are the ones `pipeline.search` evaluates for the same config: scikit-learn's own
`ParameterGrid` / `ParameterSampler` over the config's space (same seed), each candidate one
single-point grid of a `GridSearchCV`; `halving-grid` is a `HalvingGridSearchCV` with the
config's resource, factor and minimum. The model is a hand-written factory (Sequential Dense
layers with the config's widths, activation, initializer and dropout; SGD with momentum,
Nesterov and time decay, RMSprop or Adam), trained by scikeras' `KerasClassifier` with the
config's epochs, batch size and validation split on the same data and the same seeded
StratifiedKFold, n_jobs=1. It uses the pipeline only to read the config and load the data.
Writes every candidate's mean CV accuracy (keyed by its searched values) and the best as JSON.

    python benchmarks/plain_search.py CONFIG.yaml SCORES.json [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The pipeline's routed names for settings that the plain factory takes as its own arguments.
FACTORY_ARGUMENTS = {"optimizer__learning_rate": "learning_rate", "optimizer__momentum": "momentum",
                     "optimizer__nesterov": "nesterov", "optimizer__decay": "decay", "optimizer__rho": "rho"}


def create_model(hidden_layers=(64, 64), activation="relu", dropout=0.0, init_mode="glorot_uniform",
                 optimizer="rmsprop", learning_rate=0.001, momentum=0.0, nesterov=False, decay=0.0, rho=0.9, meta=None):
    """A plain model factory: Dense layers, Dropout after each hidden one, a softmax output."""
    import keras

    layers = [keras.Input(shape=(meta["n_features_in_"],))]
    for units in hidden_layers:
        layers.append(keras.layers.Dense(units, kernel_initializer=init_mode, activation=activation))
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(meta["n_classes_"], kernel_initializer=init_mode, activation="softmax"))
    model = keras.Sequential(layers)
    rate = keras.optimizers.schedules.InverseTimeDecay(learning_rate, decay_steps=1, decay_rate=decay) \
        if decay else learning_rate
    optimizers = {"sgd": lambda: keras.optimizers.SGD(rate, momentum=momentum, nesterov=nesterov),
                  "rmsprop": lambda: keras.optimizers.RMSprop(rate, rho=rho, momentum=momentum),
                  "adam": lambda: keras.optimizers.Adam(rate)}
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizers[optimizer](), metrics=["accuracy"])
    return model


def plain_name(name: str) -> str:
    """The plain search's parameter name for one of the pipeline's (model__ arguments of the factory)."""
    return f"model__{FACTORY_ARGUMENTS[name]}" if name in FACTORY_ARGUMENTS else name


def candidate_id(params: dict) -> str:
    """A candidate's searched values under the pipeline's names, comparable across both searches."""
    def plain(value):
        value = value.item() if hasattr(value, "item") else value
        return float(f"{value:.10g}") if isinstance(value, float) else value

    return json.dumps({name: plain(value) for name, value in sorted(params.items())})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("scores_path")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()

    from scikeras.wrappers import KerasClassifier
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import (GridSearchCV, HalvingGridSearchCV, ParameterGrid, ParameterSampler,
                                         StratifiedKFold)

    from pipeline.data import load_dataset
    from pipeline.spec.config import load_config
    from pipeline.spec.space import param_space

    config = load_config(args.config, args.overrides, search=True)
    model, search = config.model, config.search
    data = load_dataset(config.data, config.seed)
    fixed = dict(hidden_layers=tuple(model.hidden_layers), activation=model.activation, dropout=model.dropout,
                 init_mode=model.init_mode, optimizer=config.optimizer.name,
                 learning_rate=config.optimizer.learning_rate, decay=config.optimizer.decay,
                 **{k: v for k, v in config.optimizer.specific_args().items() if k in ("momentum", "nesterov", "rho")})
    estimator = KerasClassifier(model=create_model, **{f"model__{k}": v for k, v in fixed.items()},
                                epochs=config.training.epochs, batch_size=config.training.batch_size,
                                validation_split=config.data.validation_split, random_state=config.seed, verbose=0)
    cv = StratifiedKFold(n_splits=config.cv.folds, shuffle=True, random_state=config.seed)
    space = param_space(config)
    if search.strategy == "halving-grid":
        grids = space if isinstance(space, list) else [space]
        runner = HalvingGridSearchCV(estimator, [{plain_name(k): v for k, v in grid.items()} for grid in grids],
                                     cv=cv, factor=search.factor, resource=search.resource,
                                     min_resources=search.min_resources or "smallest",
                                     max_resources=config.training.epochs, random_state=config.seed, n_jobs=1)
    else:
        candidates = list(ParameterGrid(space) if search.strategy == "grid" else
                          ParameterSampler(space, n_iter=search.n_iter, random_state=config.seed))
        runner = GridSearchCV(estimator, [{plain_name(k): [v] for k, v in c.items()} for c in candidates],
                              cv=cv, n_jobs=1)
    runner.fit(data.x_train, data.y_train)
    pipeline_name = {plain_name(name): name for grid in (space if isinstance(space, list) else [space]) for name in grid}
    results = runner.cv_results_
    scores = {}  # halving: a candidate's score in the last round it reached
    for params, score in zip(results["params"], results["mean_test_score"]):
        scores[candidate_id({pipeline_name[k]: v for k, v in params.items() if k in pipeline_name})] = float(score)
    best = candidate_id({pipeline_name[k]: v for k, v in runner.best_params_.items() if k in pipeline_name})
    fits = len(results["params"]) * config.cv.folds + 1  # every fit and the refit
    with open(args.scores_path, "w") as handle:
        json.dump({"mean_test_score": scores, "best": best, "fits": fits}, handle)
    print(f"best {runner.best_params_} {runner.best_score_:.4f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
