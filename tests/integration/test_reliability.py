"""Crash safety: SIGKILL + resume, Ctrl-C, diverging candidates, the failure limit, resume checks, memory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_main, write_config

from pipeline.journal import read_journal
from pipeline.search import main

SEARCH = {"strategy": "grid", "fits_per_process": 5, "params": {"model__init_mode": ["he_normal", "glorot_uniform", "lecun_uniform"],
                                         "batch_size": [16, 32]}}  # 6 candidates x 2 folds = 12 fits
TIME_COLUMNS = ["mean_fit_time", "mean_score_time"]


def _start(config: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "pipeline.search", "--config", str(config), "--output-dir", str(out),
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_records(out: Path, count: int, process: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        journals = list(out.glob("*/journal.jsonl"))
        lines = journals[0].read_text().count("\n") if journals else 0
        if lines >= count:
            return lines
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError("the search journaled too few fits in time")


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    config = write_config(tmp_path, training={"epochs": 3, "batch_size": 32}, search=SEARCH)
    process = _start(config, tmp_path / "killed")
    journaled = _wait_for_records(tmp_path / "killed", 3, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    (run_dir,) = (tmp_path / "killed").iterdir()
    before = read_journal(run_dir / "journal.jsonl")
    assert 3 <= journaled == len(before) < 12, "the kill must land mid-search"
    assert not (run_dir / "results.csv").exists()

    assert run_main(main, ["--resume", run_dir, "--quiet"]) == 0
    after = read_journal(run_dir / "journal.jsonl")
    fits = Counter((r["key"], r["fold"]) for r in after)
    assert len(fits) == 12 and max(fits.values()) == 1, "no fit may be journaled (trained) twice"
    assert after[: len(before)] == before
    killed, resumed = {r["pid"] for r in before}, {r["pid"] for r in after[len(before):]}
    assert killed.isdisjoint(resumed) and len(resumed) >= 2  # fresh worker processes, 5 fits each at most

    straight_config = write_config(tmp_path, "straight.yaml", training={"epochs": 3, "batch_size": 32},
                                   search={**SEARCH, "fits_per_process": 0})
    assert run_main(main, ["--config", straight_config, "--output-dir", tmp_path / "straight", "--quiet"]) == 0
    (straight_dir,) = (tmp_path / "straight").iterdir()
    resumed = pd.read_csv(run_dir / "results.csv").drop(columns=TIME_COLUMNS)
    straight = pd.read_csv(straight_dir / "results.csv").drop(columns=TIME_COLUMNS)
    pd.testing.assert_frame_equal(resumed, straight)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    config = write_config(tmp_path, training={"epochs": 3, "batch_size": 32}, search=SEARCH)
    process = _start(config, tmp_path / "out")
    _wait_for_records(tmp_path / "out", 2, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    (run_dir,) = (tmp_path / "out").iterdir()
    assert process.returncode == 130
    assert f"python -m pipeline.search --resume {run_dir}" in err and "Traceback" not in err
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert len(read_journal(run_dir / "journal.jsonl")) >= 2


def test_diverging_candidate_is_recorded_and_the_search_goes_on(tmp_path, capsys):
    config = write_config(tmp_path, model={"hidden_layers": [16], "activation": "linear"},
                          optimizer={"name": "sgd", "learning_rate": 0.01, "momentum": 0.9},
                          search={"strategy": "grid", "params": {"optimizer__learning_rate": [0.01, 100.0, 0.05]}})
    assert run_main(main, ["--config", config, "--output-dir", tmp_path / "out", "--quiet"]) == 0
    out = capsys.readouterr().out
    (run_dir,) = (tmp_path / "out").iterdir()
    results = pd.read_csv(run_dir / "results.csv", keep_default_na=False)
    last = results.iloc[-1]
    assert last["optimizer__learning_rate"] == 100.0 and last["rank"] == 3 and last["mean_test_score"] == ""
    assert last["error"].startswith("TrainingDiverged: loss became")
    assert results.iloc[0]["error"] == "" and float(results.iloc[0]["mean_test_score"]) > 0.3
    assert "1 failed candidate(s):" in out and "candidate 1: TrainingDiverged" in out


def test_consecutive_failure_limit_aborts_the_run(tmp_path, capsys):
    config = write_config(tmp_path, optimizer={"name": "sgd", "learning_rate": 0.05},
                          schedule={"name": "exponential", "k": 0.1},
                          search={"strategy": "grid", "max_consecutive_failures": 3,
                                  "params": {"optimizer__decay": [0.01, 0.02, 0.03]}})
    assert run_main(main, ["--config", config, "--output-dir", tmp_path / "out", "--quiet"]) == 1
    err = capsys.readouterr().err
    (run_dir,) = (tmp_path / "out").iterdir()
    assert "search aborted: 3 fits in a row failed" in err and "cannot be combined" in err
    assert len(read_journal(run_dir / "journal.jsonl")) == 3
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "aborted" and not (run_dir / "results.csv").exists()


def test_resume_refuses_a_changed_config_data_or_code(tiny_search_run, tmp_path, capsys):
    assert run_main(main, ["--resume", tiny_search_run, "--set", "cv.folds=3"]) == 2
    assert "differs from the run's config.yaml at cv.folds (2 in the run, 3 given)" in capsys.readouterr().err
    copy = tmp_path / "copy"
    shutil.copytree(tiny_search_run, copy)
    run = json.loads((copy / "run.json").read_text())
    run["identity"]["code"]["pipeline_source"] = "000000000000"
    (copy / "run.json").write_text(json.dumps(run))
    assert run_main(main, ["--resume", copy]) == 2
    assert "the code version differs" in capsys.readouterr().err
    run["identity"]["data"] = "mnist-sample:0:0"
    (copy / "run.json").write_text(json.dumps(run))
    assert run_main(main, ["--resume", copy]) == 2
    assert "the dataset differs" in capsys.readouterr().err
    assert run_main(main, ["--resume", tmp_path / "nothing"]) == 2
    assert "no such run folder" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="workers record RSS from /proc")
def test_memory_stays_flat_over_200_fits(tmp_path, capsys):
    """200 fits of one search: RSS (recorded per fit in the journal) stays within 15% of its value
    after the 10th fit, and fits do not get slower. TensorFlow leaks per trained model, so the
    search trains in worker processes of 50 fits each."""
    params = {"model__init_mode": ["uniform", "lecun_uniform", "normal", "glorot_normal", "glorot_uniform",
                                   "he_normal", "he_uniform", "lecun_normal", "truncated_normal", "random_uniform"],
              "batch_size": list(range(16, 36, 2))}  # 100 candidates x 2 folds
    config = write_config(tmp_path, data={"name": "mnist-sample", "train_samples": 200, "test_samples": 50,
                                          "validation_split": 0.0},
                          model={"hidden_layers": [8]}, training={"epochs": 1, "batch_size": 32},
                          search={"strategy": "grid", "fits_per_process": 50, "params": params})
    assert run_main(main, ["--config", config, "--output-dir", tmp_path / "out", "--quiet"]) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    records = read_journal(run_dir / "journal.jsonl")
    rss = np.array([r["rss_mb"] for r in records])
    seconds = np.array([r["fit_time"] for r in records])
    growth = rss.max() / rss[9] - 1
    slowdown = np.median(seconds[-20:]) / np.median(seconds[10:30])
    with capsys.disabled():
        print(f"\n[memory] {len(records)} fits in {len({r['pid'] for r in records})} worker processes: "
              f"RSS after fit 10 {rss[9]:.0f} MB, highest {rss.max():.0f} MB ({growth:+.1%}); "
              f"median fit time late/early {slowdown:.2f}x")
    assert len(records) == 200 and len({r["pid"] for r in records}) == 4
    assert growth < 0.15
    assert slowdown < 1.5
