"""Saving and loading trained models: `model.json` + `model.weights.h5` + `model.keras` + `metadata.json`.

The JSON architecture plus HDF5 weights is the classic, inspectable format; `model.keras`
is Keras' native single file. `metadata.json` carries what prediction needs besides the
network: the preprocessing (image shape, pixel scale) and the class labels, plus the
hyperparameters and scores that produced the model. Loading is defensive: only known layer
types are accepted from JSON, `.keras` files load in safe mode, and a truncated or foreign
weights file is a clear `PipelineError` rather than a crash.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import PipelineError
from ..core.files import write_json_atomic, write_text_atomic
from ..data.checks import already_scaled, check_features

ARCHITECTURE, WEIGHTS, NATIVE, METADATA = "model.json", "model.weights.h5", "model.keras", "metadata.json"
ALLOWED_LAYERS = frozenset({"Sequential", "InputLayer", "Dense", "Dropout"})


def save_model(model, folder: str | Path, metadata: dict[str, Any]) -> Path:
    """Write the four files into `folder` atomically: built in a temporary sibling, then renamed.

    A crash mid-save leaves no half-written model folder (and the next save removes what a
    killed one left); an existing folder (a resumed run saving again) is replaced only once
    the new one is complete.
    """
    folder = Path(folder)
    for leftover in folder.parent.glob(f".{folder.name}.*"):  # from a save that was killed midway
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        write_text_atomic(staging / ARCHITECTURE, model.to_json(indent=2))
        model.save_weights(staging / WEIGHTS)
        model.save(staging / NATIVE)
        write_json_atomic(staging / METADATA, {"format_version": 1, **metadata})
        staging.chmod(0o755)
        if folder.exists():
            retired = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            folder.rename(retired)
            staging.rename(folder)
            shutil.rmtree(retired)
        else:
            staging.rename(folder)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError) and not error.filename:  # HDF5 does not say which file
            error.filename = str(folder)
        raise
    return folder


class LoadedModel:
    """A saved model plus its preprocessing: `predict(images)` takes raw pixels, like the dataset files."""

    def __init__(self, keras_model, metadata: dict[str, Any]):
        self.keras_model = keras_model
        self.metadata = metadata
        self.classes = np.asarray(metadata.get("classes", []))

    def prepare(self, images) -> np.ndarray:
        """Raw images (n, *image_shape), (n, *image_shape, 1) or flattened (n, features) -> the network's input.

        Pixels are divided by the training data's scale (255 for MNIST, 16 for digits), except
        float images already in [0, 1] (such as `load_dataset(...).x_test`), which are used as
        they are; values outside the range the model was trained on are refused.
        """
        images = np.asarray(images)
        prep = self.metadata["preprocessing"]
        shape = tuple(prep.get("image_shape", ()))
        n_features = int(self.keras_model.inputs[0].shape[-1])
        if images.shape == shape or images.shape == (n_features,):
            images = images[None]
        if len(shape) >= 2 and images.shape[1:] == (*shape, 1):
            images = images[..., 0]
        if not (images.shape[1:] == shape or (images.ndim == 2 and images.shape[1] == n_features)):
            channels = f" with {images.shape[-1]} channels" if images.shape[1:-1] == shape else ""
            raise PipelineError(
                f"input of shape {images.shape}{channels} does not fit this model: it takes grayscale images of shape "
                f"{shape} (or {n_features} values each); convert or resize them first"
            )
        check_features("input", "the input", images)
        return images.reshape(len(images), n_features).astype("float32") / np.float32(self.input_scale(images))

    def input_scale(self, images: np.ndarray):
        """What to divide these inputs by: the training scale, or 1 for float pixels already in [0, 1]."""
        scale = self.metadata["preprocessing"].get("scale", 1.0)
        if isinstance(scale, list):  # a table of features, each with its own scale
            return np.asarray(scale, dtype="float32")
        floor, ceiling = self.metadata["preprocessing"].get("input_range", [0.0, scale])
        low, high = float(images.min()), float(images.max())
        if low < floor or high > ceiling:
            raise PipelineError(f"input values range from {low:g} to {high:g}, but this model was trained on pixels in "
                                f"{floor:g}-{ceiling:g} (or scaled to 0-1); give images of the same kind")
        return 1.0 if self.already_scaled(images) else scale

    def already_scaled(self, images: np.ndarray) -> bool:
        """Float pixels in [0, 1] for a model whose raw pixels were not: the caller scaled them."""
        scale = self.metadata["preprocessing"].get("scale", 1.0)
        return not isinstance(scale, list) and scale != 1.0 and already_scaled(images)

    def predict_proba(self, images) -> np.ndarray:
        return self.keras_model.predict(self.prepare(images), verbose=0, batch_size=1024)

    def predict(self, images) -> np.ndarray:
        """Class labels (classification) or values (regression) for raw inputs."""
        output = self.predict_proba(images)
        if self.metadata.get("task", "classification") == "regression":
            return output.reshape(len(output))
        return self.classes[np.argmax(output, axis=1)]


def load_model(folder: str | Path, native: bool = False) -> LoadedModel:
    """Load a saved model folder from JSON + HDF5 weights (default) or from `model.keras`."""
    from ..core.runtime import keras as _keras

    keras = _keras()
    folder = Path(folder)
    if not folder.is_dir():
        raise PipelineError(f"model folder {folder} not found: give a best_model/ or model/ folder of a run")
    metadata = _read_metadata(folder)
    if native:
        path = _require(folder, NATIVE)
        try:
            model = keras.models.load_model(path, safe_mode=True, compile=False)
        except Exception as error:
            raise PipelineError(f"{path}: cannot load ({_reason(error)}); re-save the model") from None
    else:
        model = _model_from_json(_require(folder, ARCHITECTURE), keras)
        weights = _require(folder, WEIGHTS)
        try:
            model.load_weights(weights)
        except Exception as error:
            raise PipelineError(
                f"{weights}: not readable as this model's weights ({_reason(error)}); the file is truncated, "
                "corrupt or from another model, re-save it"
            ) from None
    outputs, classes = int(model.outputs[0].shape[-1]), metadata.get("classes", [])
    if metadata.get("task", "classification") == "classification" and len(classes) != outputs:
        raise PipelineError(f"{folder / METADATA}: lists {len(classes)} classes but the model has {outputs} outputs; "
                            "the files are from different models, re-save the model")
    return LoadedModel(model, metadata)


def _read_metadata(folder: Path) -> dict[str, Any]:
    path = _require(folder, METADATA)
    try:
        metadata = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise PipelineError(f"{path}: not valid JSON; re-save the model") from None
    if not isinstance(metadata, dict) or "preprocessing" not in metadata:
        raise PipelineError(f"{path}: missing 'preprocessing'; this folder was not written by pipeline")
    return metadata


def _model_from_json(path: Path, keras):
    try:
        spec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise PipelineError(f"{path}: not valid JSON; re-save the model") from None
    layers = spec.get("config", {}).get("layers", []) if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or spec.get("class_name") != "Sequential" or not isinstance(layers, list):
        raise PipelineError(f"{path}: not a Keras Sequential architecture; re-save the model")
    unknown = sorted({str(layer.get("class_name")) for layer in layers if isinstance(layer, dict)} - ALLOWED_LAYERS)
    if unknown:
        raise PipelineError(
            f"{path}: refusing unknown layer types {', '.join(unknown)}; only {', '.join(sorted(ALLOWED_LAYERS))} are loaded"
        )
    try:
        return keras.models.model_from_json(path.read_text())
    except Exception as error:
        raise PipelineError(f"{path}: cannot rebuild the architecture ({_reason(error)}); re-save the model") from None


def _require(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise PipelineError(f"{path} is missing: {folder} is not a complete saved model, re-save it")
    return path


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]
