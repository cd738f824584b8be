"""Checks that data is usable, once, where it is loaded: one line per problem, before any run folder.

A model trained on NaN pixels, on one class, or on labels truncated from floats still
"works" and reports a score; these checks turn each such case into a `PipelineError` that
names the array, the problem and the fix. `already_scaled` is the one rule for whether
pixels are raw values or already scaled to [0, 1] (training data and prediction inputs alike).
"""

from __future__ import annotations

import numpy as np

from ..core.errors import PipelineError

MIN_PER_CLASS = 2  # the validation split and the folds are stratified: every class needs two samples


def check_features(where: str, name: str, x: np.ndarray) -> None:
    """Numbers, at least one sample, all finite."""
    if x.dtype == bool:
        return
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise PipelineError(f"{where}: {name} holds {x.dtype} values, not numbers; give numeric pixels")
    if len(x) == 0:
        raise PipelineError(f"{where}: {name} is empty (0 samples); give at least one sample per class")
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        raise PipelineError(f"{where}: {name} has {int(bad.sum())} sample(s) with NaN or infinite values "
                            f"(first: sample {int(np.flatnonzero(bad)[0])}); fill or drop them")


def already_scaled(x: np.ndarray) -> bool:
    """Floats in [0, 1]: pixels someone already divided by their scale (integers never are)."""
    return np.issubdtype(x.dtype, np.floating) and x.size > 0 and float(x.max()) <= 1


def pixel_scale(where: str, name: str, x: np.ndarray) -> float:
    """255.0 for raw pixels (integers, or floats above 1), 1.0 for floats already in [0, 1]."""
    low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if low < 0 or high > 255:
        raise PipelineError(f"{where}: {name} values range from {low:g} to {high:g}; give pixels in 0-255 "
                            "(or floats scaled to 0-1)")
    return 1.0 if already_scaled(x) else 255.0


def class_labels(where: str, name: str, y: np.ndarray) -> np.ndarray:
    """Labels as int64, refusing strings, fractions and negatives (which would be cast silently)."""
    if y.dtype == bool:
        return y.astype("int64")
    if not np.issubdtype(y.dtype, np.number):
        examples = ", ".join(repr(str(v)) for v in np.unique(y.astype(str))[:3])
        raise PipelineError(f"{where}: {name} holds non-numeric labels ({examples}, ...); "
                            "map the labels to integers, e.g. with sklearn.preprocessing.LabelEncoder")
    if len(y) and not np.isfinite(y).all():
        raise PipelineError(f"{where}: {name} has NaN or infinite labels; fill or drop those samples")
    if np.issubdtype(y.dtype, np.floating) and len(y) and (y != np.round(y)).any():
        example = y[y != np.round(y)][0]
        raise PipelineError(f"{where}: {name} has fractional labels (e.g. {example:g}); class labels must be whole "
                            "numbers (for a continuous target use a regression dataset)")
    if len(y) and y.min() < 0:
        raise PipelineError(f"{where}: {name} has negative labels (e.g. {y.min():g}); use labels 0, 1, 2, ...")
    return y.astype("int64")


def check_classes(where: str, y_train: np.ndarray, y_test: np.ndarray) -> None:
    """At least two classes, each with enough training samples, and no test class unseen in training."""
    if len(y_train) == 0 or len(y_test) == 0:
        raise PipelineError(f"{where}: the {'training' if len(y_train) == 0 else 'test'} split is empty; give more samples")
    classes, counts = np.unique(y_train, return_counts=True)
    if len(classes) < 2:
        raise PipelineError(f"{where}: every training label is {classes[0]}; a classifier needs at least two classes")
    if counts.min() < MIN_PER_CLASS:
        label = classes[np.argmin(counts)]
        raise PipelineError(f"{where}: class {label} has only {counts.min()} training sample(s); every class needs "
                            f"at least {MIN_PER_CLASS} (for the stratified validation split and folds)")
    unseen = sorted(set(np.unique(y_test).tolist()) - set(classes.tolist()))
    if unseen:
        raise PipelineError(f"{where}: test labels {unseen} never occur in training, so no model can predict them; "
                            "use the same classes in both splits")
