"""Datasets: a registry of loaders, the tutorial's preprocessing, seeded splits.

Every loader returns a `Dataset` of flattened float32 features and integer labels, plus the
name of the dataset that was *really* used: asking for `mnist` without network falls back
to the shipped `mnist-sample` loudly, and the run's metadata records it. No TensorFlow is
imported unless the full MNIST has to be fetched through Keras.
"""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core.errors import PipelineError
from ..spec.config import DataConfig
from .checks import check_classes, check_features, class_labels, pixel_scale
from .idx import load_idx_pair
from .toy import quadratic_data, spiral_data, vertical_data

MNIST_SAMPLE_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@dataclass(frozen=True)
class Dataset:
    """Features flattened to float32 in [0, 1], labels as integers (sparse, not one-hot)."""

    name: str
    requested: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    preprocessing: dict[str, Any]
    source: str
    notes: tuple[str, ...] = field(default=())
    task: str = "classification"

    @property
    def classes(self) -> list[int]:
        """Class labels; empty for regression."""
        if self.task != "classification":
            return []
        return sorted(int(c) for c in np.unique(np.concatenate([self.y_train, self.y_test])))

    def summary(self) -> dict[str, Any]:
        """What a run's metadata records about the data it really used."""
        return {
            "name": self.name,
            "requested": self.requested,
            "source": self.source,
            "n_train": int(len(self.y_train)),
            "n_test": int(len(self.y_test)),
            "n_features": int(self.x_train.shape[1]),
            "classes": self.classes,
            "preprocessing": self.preprocessing,
            "task": self.task,
            "notes": list(self.notes),
        }


def load_dataset(config: DataConfig, seed: int = 0) -> Dataset:
    """Load the configured dataset, split it (seeded, stratified), check it and subsample if asked."""
    dataset = _LOADERS[config.name](config, seed)
    if dataset.task == "classification":
        check_classes(dataset.source, dataset.y_train, dataset.y_test)
    dataset = _subsample(dataset, config, seed)
    if dataset.task == "classification" and (config.train_samples or config.test_samples):
        check_classes(f"{dataset.name} subsampled by data.train_samples/test_samples", dataset.y_train, dataset.y_test)
    return dataset


# --- preprocessing and splits -----------------------------------------------------------------

def preprocess_images(images: np.ndarray, scale: float = 255.0) -> np.ndarray:
    """The tutorial's preprocessing: flatten each image and scale pixels to [0, 1] by x / scale."""
    images = np.asarray(images)
    return (images.reshape(len(images), -1).astype("float32") / np.float32(scale))


def _image_dataset(name, requested, train, test, scale, source, notes=()) -> Dataset:
    (x_train, y_train), (x_test, y_test) = train, test
    return Dataset(
        name=name,
        requested=requested,
        x_train=preprocess_images(x_train, scale),
        y_train=np.asarray(y_train, dtype="int64"),
        x_test=preprocess_images(x_test, scale),
        y_test=np.asarray(y_test, dtype="int64"),
        # What prediction expects (`LoadedModel.prepare` checks it): grayscale images of this shape,
        # pixels in `input_range` divided by `scale`, or floats the caller already scaled to [0, 1].
        preprocessing={"image_shape": list(x_train.shape[1:]), "scale": float(scale), "input_range": [0.0, float(scale)]},
        source=source,
        notes=tuple(notes),
    )


def _split(images: np.ndarray, labels: np.ndarray, test_size: float, seed: int, stratify: bool = True):
    """Fixed-seed train/test split (stratified for classes) for datasets without a test split."""
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_size, random_state=seed, stratify=labels if stratify else None
    )
    return (x_train, y_train), (x_test, y_test)


def split_validation(x: np.ndarray, y: np.ndarray, fraction: float, seed: int):
    """Hold out a stratified `fraction` of a training split for validation curves and early stopping."""
    if fraction == 0:
        return (x, y), None
    from sklearn.model_selection import train_test_split

    try:
        x_fit, x_val, y_fit, y_val = train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y)
    except ValueError:  # too few samples for a stratified split: one of each class on both sides
        raise PipelineError(f"data.validation_split={fraction:g} of {len(y)} training samples cannot hold every "
                            f"class on both sides of the split; give more samples or change data.validation_split") from None
    return (x_fit, y_fit), (x_val, y_val)


def _subsample(dataset: Dataset, config: DataConfig, seed: int) -> Dataset:
    """Stratified subsamples of the train and test splits, for quick runs and tests."""
    from sklearn.model_selection import train_test_split

    arrays = {}
    for part, limit in (("train", config.train_samples), ("test", config.test_samples)):
        x, y = getattr(dataset, f"x_{part}"), getattr(dataset, f"y_{part}")
        if limit is not None and limit < len(y):
            stratify = y if dataset.task == "classification" else None
            try:
                x, _, y, _ = train_test_split(x, y, train_size=limit, random_state=seed, stratify=stratify)
            except ValueError:
                raise PipelineError(
                    f"data.{part}_samples={limit} is too small to hold every class of {dataset.name}; raise it"
                ) from None
        arrays[f"x_{part}"], arrays[f"y_{part}"] = x, y
    return Dataset(**{**dataset.__dict__, **arrays})


# --- loaders ----------------------------------------------------------------------------------

def _load_mnist_sample(config: DataConfig, seed: int, requested: str = "mnist-sample", notes=()) -> Dataset:
    folder = resources.files("pipeline.data") / "mnist_sample"
    images, labels = load_idx_pair(folder / MNIST_SAMPLE_FILES[0], folder / MNIST_SAMPLE_FILES[1])
    train, test = _split(images, labels, config.test_size, seed)
    source = f"shipped MNIST test set ({len(labels)} digits), split {1 - config.test_size:g}/{config.test_size:g}"
    return _image_dataset("mnist-sample", requested, train, test, 255.0, source, notes)


def _load_mnist(config: DataConfig, seed: int) -> Dataset:
    """Full MNIST through Keras (cached ~/.keras/datasets/mnist.npz or a download); else the sample."""
    try:
        from ..core.runtime import keras

        with contextlib.redirect_stdout(io.StringIO()):  # Keras' "Downloading data from ..." line
            train, test = keras().datasets.mnist.load_data()
    except Exception as error:  # no network, proxy, corrupt cache: all mean "use the shipped sample"
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        message = (
            f"WARNING: full MNIST unavailable ({reason}); falling back to the shipped mnist-sample "
            "(10,000 real MNIST digits). Scores are not comparable with full-MNIST results."
        )
        print(message, file=sys.stderr, flush=True)
        return _load_mnist_sample(config, seed, requested="mnist", notes=(message,))
    return _image_dataset("mnist", "mnist", train, test, 255.0, "keras.datasets.mnist (60,000/10,000)")


def _load_digits(config: DataConfig, seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    train, test = _split(bunch.images.astype("uint8"), bunch.target, config.test_size, seed)
    source = f"sklearn.datasets.load_digits (1,797 8x8 digits), split {1 - config.test_size:g}/{config.test_size:g}"
    return _image_dataset("digits", "digits", train, test, 16.0, source)


def _load_file(config: DataConfig, seed: int) -> Dataset:
    path = Path(config.path)
    if path.is_dir():
        return _load_idx_folder(path, config, seed)
    if path.suffix == ".npz" and path.is_file():
        return _load_npz(path)
    if not path.exists():
        raise PipelineError(f"data file {path} not found: give a .npz file or a folder of IDX files")
    raise PipelineError(f"data file {path}: expected a Keras-layout .npz file or a folder of IDX files")


def _load_npz(path: Path) -> Dataset:
    needed = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in needed if key not in archive.files]
            if missing:
                raise PipelineError(f"{path}: missing arrays {', '.join(missing)}; a Keras-layout .npz has {', '.join(needed)}")
            arrays = {key: archive[key] for key in needed}
    except PipelineError:
        raise
    except Exception as error:
        raise PipelineError(f"{path}: not a readable .npz file ({type(error).__name__}); re-create it with numpy.savez") from None
    scales = {}
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
            raise PipelineError(f"{path}: x_{part} must be (n, ...) images and y_{part} (n,) labels of the same n")
        check_features(str(path), f"x_{part}", x)
        arrays[f"y_{part}"] = class_labels(str(path), f"y_{part}", y)
        scales[part] = pixel_scale(str(path), f"x_{part}", x)
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise PipelineError(f"{path}: x_train images are {arrays['x_train'].shape[1:]} but x_test "
                            f"{arrays['x_test'].shape[1:]}; give both splits the same image shape")
    if scales["train"] != scales["test"]:
        ranges = {part: "0-1" if scale == 1 else "0-255" for part, scale in scales.items()}
        raise PipelineError(f"{path}: x_train is in {ranges['train']} but x_test in {ranges['test']}; "
                            "give both splits on one scale")
    scale = scales["train"]
    return _image_dataset(
        path.stem, "file", (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"]),
        scale, str(path),
    )


def _load_idx_folder(folder: Path, config: DataConfig, seed: int) -> Dataset:
    """A folder with MNIST-style files: train-* and t10k-* pairs, or a single pair to split."""
    def find(kind: str, prefix: str) -> Path | None:
        matches = sorted(p for p in folder.iterdir() if kind in p.name and p.name.startswith(prefix))
        return matches[0] if matches else None

    train_pair = find("idx3", "train"), find("idx1", "train")
    test_pair = find("idx3", "t10k") or find("idx3", "test"), find("idx1", "t10k") or find("idx1", "test")
    if all(train_pair) and all(test_pair):
        train, test = load_idx_pair(*train_pair), load_idx_pair(*test_pair)
    else:
        images, labels = find("idx3", ""), find("idx1", "")
        if not (images and labels):
            raise PipelineError(f"{folder}: no IDX images (*idx3*) and labels (*idx1*) files found")
        train, test = _split(*load_idx_pair(images, labels), config.test_size, seed)
    return _image_dataset(folder.name, "file", train, test, 255.0, str(folder))


def _load_toy(config: DataConfig, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    if config.name == "quadratic":
        inputs, target = quadratic_data(config.samples or 1000, rng, config.x1_range, config.x2_range,
                                        0.5 if config.noise is None else config.noise)
        scale = [float(max(abs(v) for v in config.x1_range)), float(max(abs(v) for v in config.x2_range))]
        train, test = _split(inputs, target, config.test_size, seed, stratify=False)
        source = f"y = x1^2 + x2 + noise, x1 in {list(config.x1_range)}, x2 in {list(config.x2_range)}"
        return _table_dataset("quadratic", train, test, scale, source, task="regression")
    generate = vertical_data if config.name == "vertical" else spiral_data
    kwargs = {} if config.noise is None else {"noise": config.noise}
    points, labels = generate(config.samples or 100, 3, rng, **kwargs)
    train, test = _split(points, labels, config.test_size, seed)
    return _table_dataset(config.name, train, test, 1.0, f"{config.name} point clouds, 3 classes", task="classification")


def _table_dataset(name, train, test, scale, source, task) -> Dataset:
    """Features that are already a table (no images): scaled per feature by `scale`."""
    (x_train, y_train), (x_test, y_test) = train, test
    divide = np.asarray(scale, dtype="float32")
    label_type = "int64" if task == "classification" else "float32"
    return Dataset(
        name=name, requested=name,
        x_train=(x_train / divide).astype("float32"), y_train=np.asarray(y_train, dtype=label_type),
        x_test=(x_test / divide).astype("float32"), y_test=np.asarray(y_test, dtype=label_type),
        preprocessing={"image_shape": [int(x_train.shape[1])], "scale": scale},
        source=source, task=task,
    )


_LOADERS: dict[str, Callable[[DataConfig, int], Dataset]] = {
    "mnist": _load_mnist,
    "mnist-sample": _load_mnist_sample,
    "digits": _load_digits,
    "file": _load_file,
    "vertical": _load_toy,
    "spiral": _load_toy,
    "quadratic": _load_toy,
}
