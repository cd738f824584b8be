"""`python -m pipeline.predict`: load a saved model folder and predict for a file of digits.

Inputs: a `.npz` (arrays `x_test`, `x` or `images`; labels `y_test`/`y`/`labels` if present),
an IDX images file (labels from `--labels`), or PNG/JPEG images. Images are converted to
grayscale and resized to the model's image size; dark digits on a light background are
inverted to MNIST's light-on-dark. When labels are known, the accuracy is printed too.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import PipelineError, run_cli

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_NPZ_IMAGES, _NPZ_LABELS = ("x_test", "x", "images"), ("y_test", "y", "labels")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.predict", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a saved model folder, e.g. outputs/<run>/best_model")
    parser.add_argument("--input", required=True, nargs="+", help=".npz, IDX images file, or PNG/JPEG images")
    parser.add_argument("--labels", help="IDX labels file for an IDX images input (to report accuracy)")
    parser.add_argument("--limit", type=int, help="predict only the first N inputs")
    parser.add_argument("--out", help="write label and class probabilities per input to this CSV")
    parser.add_argument("--native", action="store_true", help="load model.keras instead of model.json + weights")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import pandas as pd

    from .persistence import load_model
    from .runs import write_csv_atomic

    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit <= 0:
        raise PipelineError(f"--limit {args.limit}: give a positive number of inputs")
    if args.out and not Path(args.out).resolve().parent.is_dir():
        raise PipelineError(f"--out {args.out}: folder {Path(args.out).parent} does not exist; create it first")
    model = load_model(args.model, native=args.native)
    names, images, labels = read_inputs(args.input, args.labels, model.metadata["preprocessing"])
    if args.limit:
        names, images = names[: args.limit], images[: args.limit]
        labels = labels[: args.limit] if labels is not None else None
    probabilities = model.predict_proba(images)
    predicted = model.classes[np.argmax(probabilities, axis=1)]
    table = pd.DataFrame({"input": names, "label": predicted, "probability": probabilities.max(axis=1).round(4)})
    if labels is not None:
        table.insert(2, "true", labels)
    print(table.to_string(index=False, max_rows=40))
    if labels is not None:
        print(f"accuracy: {np.mean(predicted == labels):.4f} on {len(labels)} inputs")
    if args.out:
        frame = table.drop(columns="probability")
        for index, label in enumerate(model.classes):
            frame[f"prob_{label}"] = probabilities[:, index]
        write_csv_atomic(frame, args.out)
        print(f"wrote {args.out}")
    return 0


def read_inputs(paths: Sequence[str], labels_path: str | None, preprocessing: dict):
    """(names, raw images, labels or None) from the given files."""
    from .data import load_idx_pair, read_idx

    paths = [Path(p) for p in paths]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise PipelineError(f"input file {missing[0]} not found: check the path")
    if all(p.suffix.lower() in IMAGE_SUFFIXES for p in paths):
        shape = tuple(preprocessing.get("image_shape", ()))
        return [p.name for p in paths], np.stack([read_image(p, shape) for p in paths]), None
    if len(paths) != 1:
        raise PipelineError("give one .npz or IDX file, or any number of PNG/JPEG images")
    path = paths[0]
    if path.suffix == ".npz":
        images, labels = _read_npz(path)
    elif labels_path:
        images, labels = load_idx_pair(path, labels_path)
    else:
        images, labels = read_idx(path), None
    return [f"{path.name}[{i}]" for i in range(len(images))], images, labels


def read_image(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A PNG/JPEG as a grayscale array of `shape`, light digit on dark background like MNIST."""
    from PIL import Image, UnidentifiedImageError

    if len(shape) != 2:
        raise PipelineError(f"{path}: this model was not trained on 2-D images, so it cannot read image files")
    try:
        with Image.open(path) as image:
            gray = image.convert("L").resize((shape[1], shape[0]), Image.Resampling.LANCZOS)
    except (UnidentifiedImageError, OSError) as error:
        raise PipelineError(f"{path}: not a readable image ({error}); give a PNG or JPEG file") from None
    pixels = np.asarray(gray, dtype="uint8")
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return 255 - pixels if border.mean() > 127 else pixels


def _read_npz(path: Path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            image_key = next((k for k in _NPZ_IMAGES if k in archive.files), None)
            if image_key is None:
                raise PipelineError(f"{path}: no images array; name it one of {', '.join(_NPZ_IMAGES)}")
            label_key = next((k for k in _NPZ_LABELS if k in archive.files), None)
            return archive[image_key], (archive[label_key] if label_key else None)
    except PipelineError:
        raise
    except Exception as error:
        raise PipelineError(f"{path}: not a readable .npz file ({type(error).__name__})") from None


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
