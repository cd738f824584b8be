"""Datasets: IDX parsing of the shipped files, bad files, splits, the offline fallback, local files."""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources

import numpy as np
import pytest

from pipeline.spec.config import DataConfig
from pipeline.data.datasets import MNIST_SAMPLE_FILES, load_dataset, split_validation
from pipeline.data.idx import load_idx_pair, read_idx
from pipeline.core.errors import PipelineError

SHIPPED = resources.files("pipeline.data") / "mnist_sample"
# Label counts of the official MNIST test set.
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_shipped_files_are_the_official_mnist_test_set():
    digests = [hashlib.md5((SHIPPED / name).read_bytes()).hexdigest() for name in MNIST_SAMPLE_FILES]
    assert digests == ["9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"]
    images, labels = load_idx_pair(SHIPPED / MNIST_SAMPLE_FILES[0], SHIPPED / MNIST_SAMPLE_FILES[1])
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == MNIST_TEST_COUNTS
    assert images.max() == 255 and images[0].sum() > 0


def _idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(">u1" if type_code == 0x08 else ">i4").tobytes()


def test_idx_round_trip_raw_and_gzip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "raw-idx3").write_bytes(_idx_bytes(images))
    (tmp_path / "gz-idx3.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    assert np.array_equal(read_idx(tmp_path / "raw-idx3"), images)
    assert np.array_equal(read_idx(tmp_path / "gz-idx3.gz"), images)
    ints = np.array([1, -2, 70000])
    (tmp_path / "ints").write_bytes(_idx_bytes(ints, 0x0C))
    assert read_idx(tmp_path / "ints").tolist() == [1, -2, 70000]


def test_truncated_and_foreign_idx_files_are_clear_errors(tmp_path):
    data = _idx_bytes(np.zeros((5, 28, 28), dtype=np.uint8))
    (tmp_path / "short").write_bytes(data[:-10])
    with pytest.raises(PipelineError, match="truncated or corrupt"):
        read_idx(tmp_path / "short")
    (tmp_path / "foreign").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(PipelineError, match="bad magic number"):
        read_idx(tmp_path / "foreign")
    # An images file passed as labels is caught by the magic number check.
    (tmp_path / "images").write_bytes(data)
    with pytest.raises(PipelineError, match="expected 2049 for an IDX labels file"):
        load_idx_pair(tmp_path / "images", tmp_path / "images")


def test_mnist_sample_split_is_stratified_and_seeded():
    config = DataConfig(name="mnist-sample", test_size=0.2)
    first, again, other = load_dataset(config, 1), load_dataset(config, 1), load_dataset(config, 2)
    assert first.x_train.shape == (8000, 784) and first.x_test.shape == (2000, 784)
    assert first.x_train.dtype == np.float32 and 0 <= first.x_train.min() and first.x_train.max() == 1.0
    assert np.array_equal(first.y_test, again.y_test) and not np.array_equal(first.y_test, other.y_test)
    expected = np.array(MNIST_TEST_COUNTS) * 0.2
    assert np.all(np.abs(np.bincount(first.y_test) - expected) <= 1)
    assert first.summary()["n_train"] == 8000 and first.preprocessing == {"image_shape": [28, 28], "scale": 255.0,
                                                                  "input_range": [0.0, 255.0]}


def test_subsamples_keep_every_class():
    data = load_dataset(DataConfig(name="mnist-sample", train_samples=200, test_samples=50), 0)
    assert len(data.y_train) == 200 and len(data.y_test) == 50
    assert set(data.y_train.tolist()) == set(range(10))


def test_mnist_falls_back_loudly_when_offline(monkeypatch, capsys):
    import pipeline.core.runtime

    class Offline:
        class datasets:
            class mnist:
                @staticmethod
                def load_data():
                    raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.setattr(pipeline.core.runtime, "keras", lambda: Offline)
    data = load_dataset(DataConfig(name="mnist"), 0)
    err = capsys.readouterr().err
    assert data.name == "mnist-sample" and data.requested == "mnist"
    assert err.count("\n") == 1 and "WARNING: full MNIST unavailable (URL fetch failure" in err
    assert data.summary()["notes"] and len(data.y_train) == 8000


def test_digits_is_a_second_real_dataset():
    data = load_dataset(DataConfig(name="digits"), 0)
    assert data.x_train.shape[1] == 64 and len(data.y_train) + len(data.y_test) == 1797
    assert data.x_train.max() == 1.0 and data.preprocessing["scale"] == 16.0


def test_local_npz_and_idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), "y_train": np.repeat(np.arange(4), 10),
              "x_test": rng.integers(0, 256, (8, 28, 28), dtype=np.uint8), "y_test": np.repeat(np.arange(4), 2)}
    np.savez(tmp_path / "mine.npz", **arrays)
    data = load_dataset(DataConfig(name="file", path=str(tmp_path / "mine.npz")), 0)
    assert data.name == "mine" and data.x_test.shape == (8, 784)
    assert np.allclose(data.x_train[0], arrays["x_train"][0].reshape(-1) / 255)

    folder = tmp_path / "idx"
    folder.mkdir()
    for prefix, part in (("train", "train"), ("t10k", "test")):
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(_idx_bytes(arrays[f"x_{part}"]))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(arrays[f"y_{part}"])))
    data = load_dataset(DataConfig(name="file", path=str(folder)), 0)
    assert len(data.y_train) == 40 and np.array_equal(data.y_test, arrays["y_test"])


def test_bad_local_files(tmp_path):
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((2, 4)))
    with pytest.raises(PipelineError, match="missing arrays y_train, x_test, y_test"):
        load_dataset(DataConfig(name="file", path=str(tmp_path / "partial.npz")), 0)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(PipelineError, match="not a readable .npz"):
        load_dataset(DataConfig(name="file", path=str(tmp_path / "junk.npz")), 0)
    with pytest.raises(PipelineError, match="not found"):
        load_dataset(DataConfig(name="file", path=str(tmp_path / "nothing.npz")), 0)


def test_validation_split_is_stratified():
    x, y = np.arange(100).reshape(100, 1), np.repeat(np.arange(4), 25)
    (x_fit, y_fit), (x_val, y_val) = split_validation(x, y, 0.2, 0)
    assert len(y_val) == 20 and np.bincount(y_val).tolist() == [5, 5, 5, 5]
    assert set(x_fit.ravel()).isdisjoint(x_val.ravel())
    assert split_validation(x, y, 0.0, 0)[1] is None
