"""The baseline: the seed tutorial's initializer grid written plainly with scikeras + GridSearchCV.

8 initializers x 3 folds + refit = 25 fits of 784-64-64-10 (ReLU, Dropout 0.1), RMSprop, 10 epochs,
batch 128, n_jobs=1. It uses the pipeline only to load the very same data (the dataset, its
train split and the seed); the folds are the same seeded StratifiedKFold. Writes the mean CV
accuracy of every initializer as JSON to the path given.

    python benchmarks/plain_gridsearch.py SCORES.json [--validation-split 0.1] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

INITIALIZERS = ["uniform", "lecun_uniform", "normal", "zeros", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform"]


def create_model(init_mode="uniform"):
    """The tutorial's model factory."""
    import keras

    model = keras.Sequential([
        keras.Input(shape=(784,)),
        keras.layers.Dense(64, kernel_initializer=init_mode, activation="relu"),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(64, kernel_initializer=init_mode, activation="relu"),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(10, kernel_initializer=init_mode, activation="softmax"),
    ])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.RMSprop(learning_rate=0.001),
                  metrics=["accuracy"])
    return model


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scores_path")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--validation-split", type=float, default=0.1)
    parser.add_argument("--data", default="mnist-sample")
    args = parser.parse_args()

    from scikeras.wrappers import KerasClassifier
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from pipeline.spec.config import DataConfig
    from pipeline.data import load_dataset

    data = load_dataset(DataConfig(name=args.data, validation_split=args.validation_split), args.seed)
    model = KerasClassifier(model=create_model, epochs=10, batch_size=128, verbose=0, random_state=args.seed,
                            validation_split=args.validation_split)
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=args.seed)
    grid = GridSearchCV(model, {"model__init_mode": INITIALIZERS}, cv=cv, n_jobs=1)
    grid.fit(data.x_train, data.y_train)
    scores = {p["model__init_mode"]: float(s) for p, s in zip(grid.cv_results_["params"], grid.cv_results_["mean_test_score"])}
    with open(args.scores_path, "w") as handle:
        json.dump({"mean_test_score": scores, "best": grid.best_params_["model__init_mode"],
                   "fits": len(INITIALIZERS) * 3 + 1}, handle)
    print(f"best {grid.best_params_} {grid.best_score_:.4f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
