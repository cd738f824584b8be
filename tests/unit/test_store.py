"""The fit record and fit store, atomic writes and exclusive run folders."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone

import numpy as np
import pytest

from pipeline.core.errors import PipelineError
from pipeline.core.files import create_run_dir, write_text_atomic
from pipeline.tuning.records import FitRecord, InfrastructureFailure, candidate_key, fold_key, is_infrastructure
from pipeline.tuning.store import FitStore


def record(key: str, fold: str = "f0", failure=None, **scores) -> FitRecord:
    return FitRecord.of(key, fold, {"model__hidden_layers": (8, 4)}, fit_time=0.5, history={"loss": [1.0, 0.5]},
                        test_scores=scores or {"accuracy": 0.5}, failure=failure)


def test_records_round_trip_and_a_second_reader_sees_only_the_new_lines(tmp_path):
    path = tmp_path / "journal.jsonl"
    store, reader = FitStore(path), FitStore(path)
    assert store.lookup("a", "f0") is None
    store.append(record("a"))
    store.append(record("a", "f1", failure=("diverged", "TrainingDiverged: loss became nan in epoch 2")))
    assert store.lookup("a", "f0").test_scores == {"accuracy": 0.5}
    assert store.lookup("a", "f1").reason.startswith("TrainingDiverged") and store.trailing_failures() == 1
    assert store.lookup("a", "f1").scores("test", ["accuracy"])["accuracy"] != store.lookup("a", "f1").scores(
        "test", ["accuracy"])["accuracy"]  # NaN for a failed fit
    reader.refresh()
    assert [r.fold for r in reader.records()] == ["f0", "f1"]
    first = reader.records()[0]
    assert first.params == {"model__hidden_layers": [8, 4]} and first.trainer["pid"] == os.getpid()
    assert first.trainer["rss_mb"] > 10 and first.trainer["fused"] is None
    offset = reader._offset
    store.append(record("b"))
    reader.refresh()
    assert reader._offset > offset and len(reader) == 3  # parsed from the last offset on


def test_a_partial_last_line_is_left_for_later_then_dropped_with_a_warning(tmp_path, capsys):
    path = tmp_path / "journal.jsonl"
    FitStore(path).append(record("a"))
    with open(path, "a") as handle:
        handle.write('{"key": "b", "fold": "f0", "test_sc')
    assert [r.key for r in FitStore(path, repair=False).records()] == ["a"]  # a reader does not consume it
    store = FitStore(path)
    assert "dropping a half-written last line" in capsys.readouterr().err
    store.append(record("c"))
    assert [r.key for r in FitStore(path).records()] == ["a", "c"]


def test_a_damaged_line_in_the_middle_is_a_clear_error(tmp_path):
    path = tmp_path / "journal.jsonl"
    good = record("a").to_json()
    path.write_text(f"{good}\nGARBAGE\n{good}\n")
    with pytest.raises(PipelineError, match="line 2 is not a fit record"):
        FitStore(path)
    path.write_text(f'{good}\n{{"key": "a", "fold": "f0", "params": {{}}, "surprise": 1}}\n')
    with pytest.raises(PipelineError, match="line 2"):
        FitStore(path)


def test_a_short_write_is_truncated_back_and_reported_as_infrastructure(tmp_path, monkeypatch):
    path = tmp_path / "journal.jsonl"
    store = FitStore(path)
    store.append(record("a"))
    size = path.stat().st_size
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:10]))  # the disk fills up
    with pytest.raises(InfrastructureFailure, match=r"cannot write the fit journal .* \(short write, 10 of"):
        store.append(record("b"))
    monkeypatch.undo()
    assert path.stat().st_size == size and len(store) == 1
    store.append(record("c"))
    assert [r.key for r in FitStore(path).records()] == ["a", "c"]


def test_keys_are_strict_and_stable():
    params = {"model__hidden_layers": (8, 4), "optimizer__learning_rate": np.float64(0.1), "verbose": 1,
              "context": object(), "replay_from": object()}
    assert candidate_key(params) == candidate_key({"model__hidden_layers": [8, 4], "optimizer__learning_rate": 0.1})
    assert candidate_key(params) != candidate_key({**params, "optimizer__learning_rate": 0.2})
    with pytest.raises(PipelineError, match=r"hyperparameter optimizer=<object.*cannot be keyed"):
        candidate_key({"optimizer": object()})
    X, y = np.arange(12, dtype="float32").reshape(4, 3), np.array([0, 1, 0, 1])
    assert fold_key(X, y) == fold_key(X.copy(), y.copy()) != fold_key(X, y[::-1])
    assert fold_key(X, y) != fold_key(X.astype("float64"), y)
    assert fold_key(X, y) != fold_key(X.reshape(len(X), -1, 1), y)  # same bytes, another shape
    assert fold_key(X.T, y) == fold_key(np.ascontiguousarray(X.T), y) != fold_key(X, y)
    labels = np.array(["a", "b"] * (len(y) // 2) + ["a"] * (len(y) % 2), dtype=object)
    assert fold_key(X, labels) == fold_key(X, labels.copy()) != fold_key(X, labels[::-1])


def test_failures_are_classified():
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    for error in (MemoryError(), OSError(28, "No space left on device"), TerminatedWorkerError("killed"),
                  InfrastructureFailure("x")):
        assert is_infrastructure(error)
    for error in (ValueError("bad shape"), RuntimeError("loss nan"), KeyError("x")):
        assert not is_infrastructure(error)
    with pytest.raises(ValueError, match="failure kind"):
        record("a", failure=("oom", "x"))


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "results.csv"
    write_text_atomic(target, "old\n")

    def crash(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomic(target, "new, longer content\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary left behind


def test_runs_started_at_the_same_moment_get_their_own_folders(tmp_path):
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    folders = []
    threads = [threading.Thread(target=lambda: folders.append(create_run_dir(tmp_path, "exp", now))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(folders)) == 8
    assert sorted(p.name for p in tmp_path.iterdir())[:2] == ["exp-20260102-030405", "exp-20260102-030405-2"]


def test_journal_lines_are_plain_json(tmp_path):
    path = tmp_path / "j.jsonl"
    FitStore(path).append(record("k"))
    line = json.loads(path.read_text())
    assert line["params"] == {"model__hidden_layers": [8, 4]} and line["failure"] is None
    assert set(line) == {"key", "fold", "params", "test_scores", "train_scores", "history", "fit_time", "trainer",
                         "failure", "time"}
