"""Prediction from a saved best model: CLI on .npz, IDX and PNG inputs, the Python API, and bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_main
from PIL import Image

import pipeline
from pipeline.spec.config import DataConfig
from pipeline.data import load_dataset
from pipeline.predict import main


@pytest.fixture(scope="module")
def held_out():
    """The tiny run's test digits as raw pixels, exactly as the search split them."""
    data = load_dataset(DataConfig(name="mnist-sample", train_samples=300, test_samples=100), 3)
    return (data.x_test.reshape(-1, 28, 28) * 255).round().astype(np.uint8), data.y_test


def test_predict_npz_reproduces_test_accuracy_and_writes_csv(tiny_search_run, held_out, tmp_path, capsys):
    images, labels = held_out
    np.savez(tmp_path / "digits.npz", x_test=images, y_test=labels)
    model_dir = tiny_search_run / "best_model"
    code = run_main(main, ["--model", model_dir, "--input", tmp_path / "digits.npz", "--out", tmp_path / "preds.csv"])
    out = capsys.readouterr().out
    assert code == 0
    accuracy = json.loads((model_dir / "metadata.json").read_text())["scores"]["test_accuracy"]
    assert f"accuracy: {accuracy:.4f} on 100 inputs" in out
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert len(preds) == 100 and [f"prob_{d}" for d in range(10)] == list(preds.columns[-10:])
    assert np.allclose(preds.filter(like="prob_").sum(axis=1), 1, atol=1e-4)
    assert (preds["label"] == preds.filter(like="prob_").to_numpy().argmax(axis=1)).all()


def test_python_api_applies_the_saved_preprocessing(tiny_search_run, held_out):
    images, labels = held_out
    model = pipeline.load_model(tiny_search_run / "best_model")
    first20 = model.predict(images[:20])
    assert first20.shape == (20,) and np.array_equal(first20, model.predict(images[:20].reshape(20, 784)))
    assert np.array_equal(model.predict(images[0]), first20[:1])


def test_predict_png_and_idx(tiny_search_run, held_out, tmp_path, capsys):
    images, labels = held_out
    model_dir = tiny_search_run / "best_model"
    expected = pipeline.load_model(model_dir).predict(images[:2])
    # A dark-on-light, larger image is inverted and resized to MNIST's 28x28.
    big = Image.fromarray(255 - images[0]).resize((56, 56), Image.Resampling.NEAREST)
    big.save(tmp_path / "a.png")
    Image.fromarray(images[1]).save(tmp_path / "b.png")
    assert run_main(main, ["--model", model_dir, "--input", tmp_path / "a.png", tmp_path / "b.png"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()[1:3]]
    assert [row[0] for row in rows] == ["a.png", "b.png"] and int(rows[1][1]) == expected[1]

    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in (5, 28, 28))
    (tmp_path / "five-idx3-ubyte").write_bytes(header + images[:5].tobytes())
    assert run_main(main, ["--model", model_dir, "--input", tmp_path / "five-idx3-ubyte"]) == 0
    assert "five-idx3-ubyte[4]" in capsys.readouterr().out


def test_bad_prediction_inputs(tiny_search_run, tmp_path, capsys):
    model_dir = tiny_search_run / "best_model"
    np.savez(tmp_path / "wrong.npz", x=np.zeros((3, 20, 20), dtype=np.uint8))
    cases = [
        (["--model", tmp_path / "nope", "--input", tmp_path / "wrong.npz"], "model folder"),
        (["--model", model_dir, "--input", tmp_path / "wrong.npz"], "input of shape (3, 20, 20) does not fit"),
        (["--model", model_dir, "--input", tmp_path / "missing.npz"], "not found"),
    ]
    broken = tmp_path / "broken_model"
    broken.mkdir()
    for name in ("model.json", "metadata.json", "model.keras"):
        (broken / name).write_bytes((model_dir / name).read_bytes())
    (broken / "model.weights.h5").write_bytes((model_dir / "model.weights.h5").read_bytes()[:2000])
    cases.append((["--model", broken, "--input", tmp_path / "wrong.npz"], "model.weights.h5: not readable"))
    (tmp_path / "junk.png").write_bytes(b"not an image")
    cases.append((["--model", model_dir, "--input", tmp_path / "junk.png"], "not a readable image"))
    for argv, message in cases:
        assert run_main(main, argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)


def test_json_with_unknown_layer_is_refused(tiny_search_run, tmp_path):
    folder = tmp_path / "evil"
    folder.mkdir()
    for path in (tiny_search_run / "best_model").iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    spec = json.loads((folder / "model.json").read_text())
    spec["config"]["layers"][1]["class_name"] = "Lambda"
    (folder / "model.json").write_text(json.dumps(spec))
    with pytest.raises(pipeline.PipelineError, match="refusing unknown layer types Lambda"):
        pipeline.load_model(folder)
