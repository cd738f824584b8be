"""The fit journal, atomic writes and exclusive run folders."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone

import pytest

from pipeline.errors import PipelineError
from pipeline.journal import JournalIndex, append_record, read_journal, repair_journal
from pipeline.runs import create_run_dir, write_text_atomic


def test_records_round_trip_and_index_sees_appends(tmp_path):
    path = tmp_path / "journal.jsonl"
    index = JournalIndex(path)
    assert index.lookup("a", "f0") is None
    append_record(path, {"key": "a", "fold": "f0", "test_score": 0.5, "error": None})
    append_record(path, {"key": "a", "fold": "f1", "test_score": None, "error": "ValueError: x"})
    assert index.lookup("a", "f0")["test_score"] == 0.5
    assert index.lookup("a", "f1")["error"] == "ValueError: x"
    assert index.trailing_failures() == 1
    records = read_journal(path)
    assert [r["fold"] for r in records] == ["f0", "f1"] and records[0]["pid"] == os.getpid()


def test_half_written_last_line_is_ignored_with_a_warning_and_repaired(tmp_path, capsys):
    path = tmp_path / "journal.jsonl"
    append_record(path, {"key": "a", "fold": "f0", "test_score": 0.5})
    with open(path, "a") as handle:
        handle.write('{"key": "b", "fold": "f0", "test_sc')
    assert [r["key"] for r in read_journal(path)] == ["a"]
    assert "ignoring a half-written last line" in capsys.readouterr().err
    assert repair_journal(path) == 1
    append_record(path, {"key": "c", "fold": "f0"})
    assert [r["key"] for r in read_journal(path)] == ["a", "c"]


def test_a_corrupt_line_in_the_middle_is_a_clear_error(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text('{"key": "a", "fold": "f0"}\nGARBAGE\n{"key": "b", "fold": "f0"}\n')
    with pytest.raises(PipelineError, match="line 2 is not a valid journal record"):
        read_journal(path)
    path.write_text('{"key": "a", "fold": "f0"}\n[1, 2]\n')
    with pytest.raises(PipelineError, match="line 2"):
        read_journal(path)


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


def test_journal_lines_are_json(tmp_path):
    path = tmp_path / "j.jsonl"
    append_record(path, {"key": "k", "fold": "f", "params": {"model__hidden_layers": (8, 4)}})
    assert json.loads(path.read_text())["params"] == {"model__hidden_layers": [8, 4]}
