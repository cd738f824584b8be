"""The IDX file format of MNIST: magic number (2 zero bytes, type code, dimensions), big-endian
dimensions, then the payload. Raw or gzip-compressed; every malformed file is a one-line error."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..core.errors import PipelineError

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
# IDX type codes -> big-endian numpy dtypes (http://yann.lecun.com/exdb/mnist/ format description).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file (raw or gzip): magic (2 zero bytes, type code, ndim), big-endian dims, payload."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise PipelineError(f"IDX file {path} not found: check the path") from None
    except (OSError, EOFError) as error:
        raise PipelineError(f"{path}: not a readable gzip file ({error}); re-download it") from None
    if len(raw) < 4 or raw[0:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise PipelineError(f"{path}: not an IDX file (bad magic number); give MNIST-style idx1/idx3 files")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise PipelineError(f"{path}: IDX header is truncated; re-download the file")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims)) * dtype.itemsize
    found = len(raw) - header_size
    if found != expected:
        raise PipelineError(
            f"{path}: IDX payload has {found} bytes but its dimensions {dims} need {expected}; "
            "the file is truncated or corrupt, re-download it"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx_magic(path: str | Path) -> int:
    """The 32-bit magic number of an IDX file (2051 for images, 2049 for labels)."""
    path = Path(path)
    with (gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")) as handle:
        head = handle.read(4)
    return int.from_bytes(head, "big") if len(head) == 4 else -1


def load_idx_pair(images_path: str | Path, labels_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, rows, cols) uint8 and labels (n,) from an MNIST-style pair, cross-checked."""
    for path, magic, what in ((images_path, IMAGES_MAGIC, "images"), (labels_path, LABELS_MAGIC, "labels")):
        found = read_idx_magic(path)
        if found != magic:
            raise PipelineError(f"{path}: magic number {found}, expected {magic} for an IDX {what} file")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise PipelineError(f"{images_path}: expected images (n, rows, cols) and labels (n,)")
    if len(images) != len(labels):
        raise PipelineError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    return images, labels


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"
