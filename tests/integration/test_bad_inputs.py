"""A corpus of bad inputs and hostile conditions, generated here: each gets one line on stderr that
names the problem, exit code 2, no traceback, and nothing written. Then the conditions a run must
survive: a full disk (resumable), a failed search, a finished or dead run, a killed model save."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import PROJECT, run_main, write_config
from PIL import Image

import pipeline
from pipeline import compare, predict, search, train
from pipeline.data import load_dataset
from pipeline.spec.config import DataConfig

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, (60, 28, 28)).astype("uint8")
LABELS = np.arange(60) % 3


def _data_file(folder: Path, name: str, **changes) -> Path:
    arrays = dict(x_train=PIXELS, y_train=LABELS, x_test=PIXELS[:15], y_test=LABELS[:15])
    arrays.update(changes)
    np.savez(folder / name, **arrays)
    return folder / name


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_search_run) -> Path:
    """Every bad file, built once: data sets, configs, inputs to predict on and a mismatched model."""
    d = tmp_path_factory.mktemp("corpus")
    with_nan = PIXELS.astype("float32")
    with_nan[4, 3, 3] = np.nan
    _data_file(d, "nan.npz", x_train=with_nan)
    _data_file(d, "one_class.npz", y_train=np.zeros(60, int), y_test=np.zeros(15, int))
    _data_file(d, "fractional.npz", y_train=LABELS + 0.5)
    _data_file(d, "strings.npz", y_train=np.array(["cat", "dog", "eel"] * 20))
    _data_file(d, "negative.npz", y_train=LABELS - 1, y_test=LABELS[:15] - 1)
    _data_file(d, "empty.npz", x_train=np.zeros((0, 28, 28)), y_train=np.zeros(0, int))
    _data_file(d, "unseen.npz", y_test=np.full(15, 7))
    _data_file(d, "singletons.npz", x_train=PIXELS[:3], y_train=np.array([0, 1, 2]))
    _data_file(d, "mixed_scale.npz", x_test=PIXELS[:15] / np.float32(255))
    _data_file(d, "too_bright.npz", x_train=PIXELS.astype("int16") * 2)

    (d / "binary.yaml").write_bytes(bytes(range(256)))
    (d / "empty.yaml").write_text("")
    (d / "unquoted.yaml").write_text("search:\n  params:\n    model__init_mode: [uniform(5, -5), zeros]\n")
    ten = list(range(1, 11))
    (d / "huge.yaml").write_text(yaml.safe_dump({"search": {"params": {
        "batch_size": ten, "epochs": ten, "model__dropout": [v / 20 for v in ten],
        "optimizer__learning_rate": [v / 100 for v in ten], "model__hidden_layers": [[v] for v in ten],
        "optimizer__momentum": [v / 20 for v in ten], "model__l2": [v / 1000 for v in ten],
        "model__l1": [v / 1000 for v in ten], "optimizer": ["sgd"]}}}))

    np.savez(d / "rgb.npz", x_test=np.repeat(PIXELS[..., None], 3, axis=-1))
    np.savez(d / "too_bright_input.npz", x_test=PIXELS.astype("int16") + 100)
    nan_input = PIXELS[:5].astype("float32")
    nan_input[0, 0, 0] = np.nan
    np.savez(d / "nan_input.npz", x_test=nan_input)
    np.savez(d / "text_input.npz", x_test=np.array([["a"] * 784]))
    Image.new("L", (28, 28), 255).save(d / "blank.png")
    Image.new("L", (5000, 5000)).save(d / "huge.png")  # 25 megapixels: refused before decoding
    (d / "not_an_image.png").write_text("hello")

    bad_model = d / "bad_classes_model"
    shutil.copytree(tiny_search_run / "best_model", bad_model)
    metadata = json.loads((bad_model / "metadata.json").read_text())
    (bad_model / "metadata.json").write_text(json.dumps({**metadata, "classes": [0, 1, 2]}))
    return d


CASES = [
    # class 1 and 7: predictions and files to predict on
    ("predict", "--model {m} --input {d}/rgb.npz", "with 3 channels does not fit this model"),
    ("predict", "--model {m} --input {d}/too_bright_input.npz", "range from 100 to 355"),
    ("predict", "--model {m} --input {d}/nan_input.npz", "1 sample(s) with NaN"),
    ("predict", "--model {m} --input {d}/text_input.npz", "not numbers"),
    ("predict", "--model {m} --input {d}/blank.png", "the image is blank"),
    ("predict", "--model {m} --input {d}/huge.png", "too many pixels for a digit image"),
    ("predict", "--model {m} --input {d}/not_an_image.png", "not a readable image"),
    ("predict", "--model {m} --input {d}", "is a folder: give the files in it"),
    ("predict", "--model {m} --input {d}/rgb.npz --out {d}", "is a folder: give a file name"),
    ("predict", "--model {d}/bad_classes_model --input {d}/rgb.npz", "lists 3 classes but the model has 10 outputs"),
    ("compare", "{run} --out {d}", "is a folder: give a file name"),
    # class 3 and 4: degenerate data, refused at load by both commands
    ("train", "--data {d}/nan.npz", "x_train has 1 sample(s) with NaN or infinite values (first: sample 4)"),
    ("train", "--data {d}/one_class.npz", "every training label is 0; a classifier needs at least two classes"),
    ("train", "--data {d}/fractional.npz", "fractional labels (e.g. 0.5)"),
    ("train", "--data {d}/strings.npz", "non-numeric labels ('cat', 'dog', 'eel', ...)"),
    ("train", "--data {d}/negative.npz", "negative labels (e.g. -1)"),
    ("train", "--data {d}/empty.npz", "x_train is empty (0 samples)"),
    ("train", "--data {d}/unseen.npz", "test labels [7] never occur in training"),
    ("train", "--data {d}/singletons.npz", "class 0 has only 1 training sample(s)"),
    ("search", "--data {d}/mixed_scale.npz", "x_train is in 0-255 but x_test in 0-1"),
    ("search", "--data {d}/too_bright.npz", "values range from 0 to 510"),
    # class 5, 6 and 9: configs, refused before a run folder exists
    ("search", "--config {d}/huge.yaml", "100,000,000 candidates x 3 folds = 300,000,000 fits, more than search.max_fits"),
    ("search", "--set search.scoring=f1", "search.scoring: 'f1' is not a classification scorer"),
    ("search", "--set callbacks.early_stopping.monitor=val_los", "unknown monitored metric 'val_los'"),
    ("search", "--set seed=-1", "--set seed=-1: seed: Input should be greater than or equal to 0"),
    ("search", "--set report.curves_by=[optimizer]", "report.curves_by: 'optimizer' is not a searched parameter"),
    ("search", "--set bogus.key=1", "--set bogus.key=1: bogus: unknown key"),
    ("search", "--config {d}/binary.yaml", "binary.yaml: not a text file"),
    ("search", "--config {d}/empty.yaml", "empty.yaml: the file is empty"),
    ("search", "--config {d}", "is a folder: pass a YAML file with --config"),
    ("search", "--config {d}/unquoted.yaml", "quote it: ['uniform(5, -5)']"),
    ("search", "--config {project}/configs/train_exp_decay.yaml", "this is a training config (no search section)"),
    ("train", "--set optimizer.learning_rate=-1", "optimizer.learning_rate"),
]
COMMANDS = {"predict": predict.main, "compare": compare.main, "search": search.main, "train": train.main}


@pytest.mark.parametrize("command, args, message", CASES, ids=[f"{c}:{m[:40]}" for c, _, m in CASES])
def test_each_bad_input_is_one_line_and_writes_nothing(command, args, message, corpus, tiny_search_run, tmp_path,
                                                       capsys):
    outputs = tmp_path / "outputs"
    argv = args.format(d=corpus, m=tiny_search_run / "best_model", run=tiny_search_run, project=PROJECT).split()
    if command in ("search", "train"):
        if "--config" not in argv:
            argv += ["--config", write_config(tmp_path, search={"strategy": "grid", "params": {"batch_size": [16, 32]}})]
        argv += ["--output-dir", outputs]
    before = sorted(p.name for p in corpus.iterdir())
    code = run_main(COMMANDS[command], argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert message in lines[0]
    assert not outputs.exists() and sorted(p.name for p in corpus.iterdir()) == before


def test_scaled_and_raw_pixels_predict_alike(tiny_search_run, tmp_path, capsys):
    """`load_dataset(...).x_test` (floats in [0, 1]) gives the accuracy raw pixels give, by CLI and API."""
    data = load_dataset(DataConfig(name="mnist-sample", train_samples=300, test_samples=100), 3)
    raw = (data.x_test.reshape(-1, 28, 28) * 255).round().astype("uint8")
    np.savez(tmp_path / "scaled.npz", x_test=data.x_test, y_test=data.y_test)
    np.savez(tmp_path / "raw.npz", x_test=raw, y_test=data.y_test)
    model_dir = tiny_search_run / "best_model"
    accuracy = json.loads((model_dir / "metadata.json").read_text())["scores"]["test_accuracy"]
    for name, note in (("scaled", True), ("raw", False)):
        assert run_main(predict.main, ["--model", model_dir, "--input", tmp_path / f"{name}.npz"]) == 0
        captured = capsys.readouterr()
        assert f"accuracy: {accuracy:.4f} on 100 inputs" in captured.out
        assert ("read as pixels already scaled" in captured.err) == note
    model = pipeline.load_model(model_dir)
    assert np.array_equal(model.predict(data.x_test), model.predict(raw))
    assert np.array_equal(model.predict(raw[..., None]), model.predict(raw))  # a channel axis of 1 is fine


def test_a_digit_drawn_only_in_the_alpha_channel_reads_like_the_plain_image(tmp_path):
    from pipeline.data.inputs import read_image

    digit = PIXELS[0] // 2 + np.pad(np.full((8, 8), 120, "uint8"), 10)
    Image.fromarray(digit).save(tmp_path / "plain.png")
    for ink in (0, 255):  # black or white ink, the shape only in the alpha channel
        rgba = np.zeros((28, 28, 4), "uint8")
        rgba[..., :3], rgba[..., 3] = ink, digit
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"alpha{ink}.png")
        read = read_image(tmp_path / f"alpha{ink}.png", (28, 28)).astype(int)
        assert np.abs(read - read_image(tmp_path / "plain.png", (28, 28))).max() <= 1


def test_train_handles_any_two_labels_and_reports_divergence(corpus, tmp_path, capsys):
    """Labels 3 and 8 train as classes 0 and 1 and predict as 3 and 8; a learning rate of 1000 is a
    reported divergence (exit 1, one line, run.json says so, no model saved), not a 10% model."""
    labels = np.where(LABELS == 0, 3, 8)
    data = _data_file(tmp_path, "three_eight.npz", y_train=labels, y_test=labels[:15])
    argv = ["--config", write_config(tmp_path, training={"epochs": 1, "batch_size": 16}), "--data", data, "--quiet"]
    assert run_main(train.main, [*argv, "--output-dir", tmp_path / "ok"]) == 0
    (run_dir,) = (tmp_path / "ok").iterdir()
    model = pipeline.load_model(run_dir / "model")
    assert model.metadata["classes"] == [3, 8] and set(model.predict(PIXELS)) <= {3, 8}
    capsys.readouterr()
    code = run_main(train.main, [*argv, "--output-dir", tmp_path / "diverged", "--set", "optimizer.learning_rate=1000"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: training diverged: loss ")
    (run_dir,) = (tmp_path / "diverged").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "diverged"
    assert not (run_dir / "model").exists()


def test_a_search_whose_every_candidate_fails_is_recorded_as_failed(tmp_path, capsys):
    """Diverging candidates: one error line (no Keras line per fit), run.json 'failed' with the
    reason, and a report that shows the failures and says there is no best model."""
    config = write_config(tmp_path, data={"name": "quadratic", "samples": 100}, optimizer={"name": "sgd", "learning_rate": 0.05},
                          search={"strategy": "grid",
                                  "params": {"model__init_mode": ["uniform(-1000, 1000)", "uniform(-900, 900)"]}},
                          execution={"fuse": False})  # through the scikeras estimator and its callbacks
    code = run_main(search.main, ["--config", config, "--output-dir", tmp_path / "out", "--quiet"])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: every candidate failed"), lines
    assert "Invalid loss" not in captured.out
    (run_dir,) = (tmp_path / "out").iterdir()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "failed" and "diverged" in run["reason"].lower() and len(run["failed_candidates"]) == 2
    report = (run_dir / "report.md").read_text()
    assert "status failed (every candidate failed" in report and "None: the run's status is failed" in report


def test_resuming_a_finished_run_changes_nothing(tiny_search_run, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in tiny_search_run.rglob("*") if p.is_file()}
    assert run_main(search.main, ["--resume", tiny_search_run]) == 0
    assert "is already finished: nothing to train" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in tiny_search_run.rglob("*") if p.is_file()} == before


def test_resuming_a_run_killed_while_writing_its_report_rebuilds_only_the_report(tiny_search_run, tmp_path, capsys):
    """The last step of a run is its report, written after run.json says finished: a kill there
    leaves a finished run without report, which --resume rebuilds without training anything."""
    run_dir = Path(shutil.copytree(tiny_search_run, tmp_path / "run"))
    (run_dir / "report.html").unlink()
    kept = [run_dir / "journal.jsonl", run_dir / "results.csv", run_dir / "run.json", *(run_dir / "best_model").iterdir()]
    before = {path: path.read_bytes() for path in kept}
    assert run_main(search.main, ["--resume", run_dir]) == 0
    assert "already finished: nothing to train; rebuilt its report" in capsys.readouterr().out
    assert "status finished" in (run_dir / "report.md").read_text()
    assert "<html" in (run_dir / "report.html").read_text().lower()
    assert {path: path.read_bytes() for path in kept} == before


def test_the_report_of_a_dead_run_says_it_stopped(tiny_search_run, tmp_path):
    from pipeline.core.files import run_lock
    from pipeline.review.report import RunFiles

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_search_run, run_dir)
    run = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**run, "status": "running"}))
    assert RunFiles(run_dir).status.startswith(f"stopped (its process ended without finishing; continue with "
                                               f"python -m pipeline.search --resume {run_dir}")
    with run_lock(run_dir):
        assert subprocess.run(  # another process sees the lock held: the run is alive
            [sys.executable, "-c", f"from pipeline.review.report import RunFiles; print(RunFiles(__import__('pathlib')"
                             f".Path('{run_dir}')).status)"], capture_output=True, text=True, cwd=PROJECT,
        ).stdout.strip() == "running"


def test_a_killed_save_leaves_nothing_behind_after_the_next(tiny_search_run, tmp_path):
    from pipeline.training.persistence import save_model

    (tmp_path / ".best_model.k1ll3d").mkdir()
    (tmp_path / ".best_model.k1ll3d" / "model.json").write_text("{")
    loaded = pipeline.load_model(tiny_search_run / "best_model")
    save_model(loaded.keras_model, tmp_path / "best_model", loaded.metadata)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model"]


def test_a_full_disk_while_saving_the_model_stops_resumably(tmp_path, monkeypatch, capsys):
    """ENOSPC injected into the model writer: one line naming the folder and the resume command,
    run.json 'interrupted'; after space is freed, --resume finishes without retraining a fit."""
    import pipeline.training.persistence as persistence

    real_write = persistence.write_json_atomic

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(persistence, "write_json_atomic", full_disk)
    config = write_config(tmp_path, search={"strategy": "grid", "params": {"model__init_mode": ["zeros", "he_normal"]}})
    code = run_main(search.main, ["--config", config, "--output-dir", tmp_path / "out", "--quiet"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    (run_dir,) = (tmp_path / "out").iterdir()
    assert code == 1 and len(lines) == 1, lines
    assert lines[0] == (f"error: cannot write {run_dir}/best_model (No space left on device); free disk space, "
                        f"then continue with: python -m pipeline.search --resume {run_dir}")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert not list(run_dir.glob(".best_model*")) and not (run_dir / "best_model").exists()
    journal = (run_dir / "journal.jsonl").read_text()
    monkeypatch.setattr(persistence, "write_json_atomic", real_write)
    assert run_main(search.main, ["--resume", run_dir, "--quiet"]) == 0
    assert (run_dir / "journal.jsonl").read_text() == journal  # every fit replayed, none retrained
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    assert (run_dir / "best_model" / "metadata.json").is_file()


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs (needs root and mount; skipped where the test cannot mount one)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_and_a_read_only_disk_on_a_real_file_system(small_disk, tmp_path, capsys):
    """The journal's first append hits a full tmpfs: the run stops with one line, the journal holds
    no torn record, and once space is freed --resume completes. A read-only file system: one line."""
    config = write_config(tmp_path, search={"strategy": "grid", "params": {"model__init_mode": ["zeros", "he_normal"]}})
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (1024 * 1024 - 8 * 1024))  # leaves room for the run folder's first files only
    code = run_main(search.main, ["--config", config, "--output-dir", small_disk / "out", "--quiet"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    (run_dir,) = (small_disk / "out").iterdir()
    assert code == 1 and len(lines) == 1 and "(No space left on device); fix the cause, then continue with: " \
        f"python -m pipeline.search --resume {run_dir}" in lines[0], lines
    assert all(json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines())
    filler.unlink()
    assert run_main(search.main, ["--resume", run_dir, "--quiet"]) == 0
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"

    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    capsys.readouterr()
    code = run_main(train.main, ["--config", write_config(tmp_path), "--output-dir", small_disk / "new", "--quiet"])
    assert code == 2 and capsys.readouterr().err.strip().endswith("(Read-only file system); choose another with output_dir")
