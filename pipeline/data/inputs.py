"""Files to predict on: a `.npz` (arrays `x_test`, `x` or `images`; labels `y_test`/`y`/`labels`
if present), an IDX images file (labels from a second IDX file), or PNG/JPEG images. Images are
converted to grayscale and resized to the model's image size; dark digits on a light background
are inverted to MNIST's light-on-dark."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.errors import PipelineError
from .idx import load_idx_pair, read_idx

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# A digit needs few pixels; this refuses decompression bombs long before Pillow's own limit.
MAX_IMAGE_PIXELS = 4096 * 4096
NPZ_IMAGES, NPZ_LABELS = ("x_test", "x", "images"), ("y_test", "y", "labels")


def read_inputs(paths: Sequence[str | Path], labels_path: str | None, preprocessing: dict):
    """(names, raw images, labels or None) from the given files."""
    paths = [Path(p) for p in paths]
    for path in paths:
        if path.is_dir():
            raise PipelineError(f"input {path} is a folder: give the files in it (e.g. {path}/*.png)")
        if not path.is_file():
            raise PipelineError(f"input file {path} not found: check the path")
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
    """A PNG/JPEG as a grayscale array of `shape`, light digit on dark background like MNIST.

    Transparency is flattened onto a background that contrasts with the ink (a digit drawn
    only in the alpha channel is common in exports); huge images are refused before decoding.
    """
    from PIL import Image, UnidentifiedImageError

    if len(shape) != 2:
        raise PipelineError(f"{path}: this model was not trained on 2-D images, so it cannot read image files")
    too_large = f"{path}: too many pixels for a digit image (limit {MAX_IMAGE_PIXELS:,}); scale it down first"
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise PipelineError(too_large)
            gray = _flatten_transparency(image).resize((shape[1], shape[0]), Image.Resampling.LANCZOS)
    except Image.DecompressionBombError:
        raise PipelineError(too_large) from None
    except (UnidentifiedImageError, OSError) as error:
        raise PipelineError(f"{path}: not a readable image ({error}); give a PNG or JPEG file") from None
    pixels = np.asarray(gray, dtype="uint8")
    if pixels.min() == pixels.max():
        raise PipelineError(f"{path}: the image is blank (every pixel is {pixels.min()}); give an image of a digit")
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return 255 - pixels if border.mean() > 127 else pixels


def _flatten_transparency(image):
    """Grayscale, with transparent pixels shown as the background opposite to the ink's brightness."""
    from PIL import Image

    if "A" not in image.getbands() and "transparency" not in image.info:
        return image.convert("L")
    rgba = image.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"), dtype="float64")
    ink = np.asarray(rgba.convert("L"), dtype="float64")
    ink_brightness = (ink * alpha).sum() / alpha.sum() if alpha.sum() else 0.0
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255) if ink_brightness < 128 else (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("L")


def _read_npz(path: Path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            image_key = next((k for k in NPZ_IMAGES if k in archive.files), None)
            if image_key is None:
                raise PipelineError(f"{path}: no images array; name it one of {', '.join(NPZ_IMAGES)}")
            label_key = next((k for k in NPZ_LABELS if k in archive.files), None)
            return archive[image_key], (archive[label_key] if label_key else None)
    except PipelineError:
        raise
    except Exception as error:
        raise PipelineError(f"{path}: not a readable .npz file ({type(error).__name__})") from None
