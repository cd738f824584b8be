"""Each fold's samples in the order its solo fit trains on them, side by side, for one fused program.

A solo Keras fit splits off the last `validation_split` of its samples as validation data and
shuffles the rest; seeded, it draws the same order in every epoch (Keras 3's array adapter
shuffles one permutation per iterator, and its seed is fixed when the dataset is traced). So the
fused program is fed each fold's training samples already in that order, unshuffled, and its
validation samples as validation data, gathered straight from the one copy of the data by the
folds' row numbers. The folds of a k-fold split may differ by a sample: a shorter fold is padded
at its end, and every target carries a weight that makes each tower's loss its own fold's batch
mean (`pipeline.training.tower_layers.summed_loss`) and leaves padding out of losses, gradients
and metrics. Folds need the same number of batches per epoch, else a shorter fold's towers would
take an optimizer step that their solo fits never take.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class FoldBatches:
    """What the program trains on: (samples, folds, features) inputs and (samples, folds, 2)
    targets, each [target, weight]; validation data likewise, or None."""

    x: np.ndarray
    y: np.ndarray
    validation: tuple[np.ndarray, np.ndarray] | None


def training_rows(samples: int, validation_split: float) -> int:
    """How many of a fold's samples a fit trains on: Keras' own split point."""
    return int(math.floor(samples * (1.0 - validation_split))) if validation_split else samples


def steps_per_epoch(samples: int, validation_split: float, batch_size: int) -> int:
    return math.ceil(training_rows(samples, validation_split) / batch_size)


def keras_order(samples: int, batch_size: int, seed: int | None, seeding: Callable | None) -> np.ndarray:
    """The order in which a Keras fit seeded with `seeding(seed)` draws `samples` training samples
    (Keras' own array adapter, run on the sample indices)."""
    from ..core.runtime import keras as load_keras

    load_keras()  # TensorFlow imported the project's way (quietly, frozen out of gc) before Keras' internals
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    with seeding(seed) if seeding is not None and seed is not None else nullcontext():
        adapter = ArrayDataAdapter(np.arange(samples, dtype="int64")[:, None], batch_size=batch_size, shuffle=True)
        return np.concatenate([np.asarray(batch)[:, 0] for batch in adapter.get_tf_dataset()])


def fold_batches(X: np.ndarray, targets: np.ndarray, folds: Sequence[np.ndarray], *, validation_split: float,
                 batch_size: int, shuffle: bool, seed: int | None = None,
                 seeding: Callable | None = None) -> FoldBatches:
    """The program's training and validation data: fold f's samples are the rows `folds[f]` of
    `X` (samples, features) and `targets` (samples,), in the order its solo fit sees them."""
    splits = [training_rows(len(rows), validation_split) for rows in folds]
    if len({math.ceil(split / batch_size) for split in splits}) != 1:
        raise ValueError("folds in one program need the same number of batches per epoch")
    orders = {split: keras_order(split, batch_size, seed, seeding) if shuffle else np.arange(split)
              for split in set(splits)}
    train = _side_by_side(X, targets, [rows[orders[split]] for rows, split in zip(folds, splits)], batch_size)
    if not validation_split:
        return FoldBatches(*train, None)
    return FoldBatches(*train, _side_by_side(X, targets, [rows[split:] for rows, split in zip(folds, splits)], None))


def _side_by_side(X: np.ndarray, targets: np.ndarray, indices: list[np.ndarray],
                  batch_size: int | None) -> tuple[Any, Any]:
    """The rows `indices[f]` of each fold side by side, padded to the longest with copies of its
    last one (weight 0). With `batch_size`, the last batch's weights make each fold's loss the
    mean over its own samples: Keras divides the summed loss by the batch's size, the longest fold's."""
    longest = max(len(index) for index in indices)
    x = np.empty((longest, len(indices), X.shape[1]), dtype="float32")
    y = np.zeros((longest, len(indices), 2), dtype="float32")
    last = (longest - 1) // batch_size * batch_size if batch_size else 0
    for fold, index in enumerate(indices):
        padded = np.concatenate([index, np.repeat(index[-1:], longest - len(index))])
        x[:, fold], y[:, fold, 0] = X[padded], targets[padded]
        y[: len(index), fold, 1] = 1.0
        if batch_size and len(index) < longest:
            y[last: len(index), fold, 1] = (longest - last) / (len(index) - last)
    return x, y
