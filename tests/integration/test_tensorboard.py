"""A search's RUN/tensorboard, read back and checked against results.csv, rewritten by
`pipeline.report --tensorboard`, and shown by a real TensorBoard in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from conftest import free_port, read_tensorboard, run_main

from pipeline import report

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package `chromium`
TRIAL_ID = re.compile(r"candidate_\d+/fold_\w+|refit")


def _expected_sessions(run_dir: Path) -> set[str]:
    results = pd.read_csv(run_dir / "results.csv")
    folds = sorted(int(c[len("fold"):-len("_test_score")]) for c in results if c.startswith("fold"))
    return {f"candidate_{c:03d}/fold_{k}" for c in results["candidate"] for k in folds} | {"refit"}


def test_every_fit_is_a_session_with_the_scores_of_results_csv(tiny_search_run):
    board = read_tensorboard(tiny_search_run / "tensorboard")
    results = pd.read_csv(tiny_search_run / "results.csv").set_index("candidate")
    histories = pd.read_csv(tiny_search_run / "fit_histories.csv", dtype={"fold": str})
    fits = pd.read_csv(tiny_search_run / "fits.csv", dtype={"fold_key": str})
    assert set(board) - {"."} == _expected_sessions(tiny_search_run) and len(board) == 4 * 2 + 2
    domains = {info.name: [v.number_value or v.string_value for v in info.domain_discrete.values]
               for info in board["."]["experiment"].hparam_infos}
    assert domains == {"batch_size": [16, 32], "model__init_mode": ["glorot_uniform", "zeros"],
                       "fold": ["0", "1", "refit"]}
    for candidate, row in results.iterrows():
        train_scores = []
        for fold in (0, 1):
            session = board[f"candidate_{candidate:03d}/fold_{fold}"]
            hparams = session["session"].hparams
            assert hparams["batch_size"].number_value == row["batch_size"]
            assert hparams["model__init_mode"].string_value == row["model__init_mode"]
            scalars = session["scalars"]
            assert scalars["test_score"] == [(1, pytest.approx(row[f"fold{fold}_test_score"], abs=1e-6))]
            assert scalars["mean_test_score"] == [(1, pytest.approx(row["mean_test_score"], abs=1e-6))]
            train_scores.append(scalars["train_score"][0][1])
            key = fits.query("candidate == @candidate and fold == @fold")["fold_key"].item()
            curve = histories.query("candidate == @candidate and fold == @key")
            for name in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
                assert scalars[f"epoch_{name}"] == [(e, pytest.approx(v, rel=1e-6)) for e, v in enumerate(curve[name])]
        assert sum(train_scores) / 2 == pytest.approx(row["mean_train_score"], abs=1e-6)
    run = json.loads((tiny_search_run / "run.json").read_text())
    refit = board["refit"]
    assert refit["session"].hparams["batch_size"].number_value == run["best_params"]["batch_size"]
    assert refit["scalars"]["test_score"] == [(1, pytest.approx(run["test_accuracy"], abs=1e-6))]
    assert refit["scalars"]["mean_test_score"] == [(1, pytest.approx(run["best_cv_score"], abs=1e-6))]
    history = pd.read_csv(tiny_search_run / "history.csv")
    assert refit["scalars"]["epoch_loss"] == [(e, pytest.approx(v, rel=1e-6)) for e, v in enumerate(history["loss"])]


def test_report_rewrites_the_tensorboard_folder_of_an_existing_run(tiny_search_run, tmp_path, capsys):
    run_dir = tmp_path / tiny_search_run.name
    shutil.copytree(tiny_search_run, run_dir)
    shutil.rmtree(run_dir / "tensorboard")
    assert run_main(report.main, [run_dir, "--tensorboard"]) == 0
    assert f"view it with: tensorboard --logdir {run_dir / 'tensorboard'}" in capsys.readouterr().out
    assert read_tensorboard(run_dir / "tensorboard") == read_tensorboard(tiny_search_run / "tensorboard")

    (run_dir / "fits.csv").unlink()
    shutil.rmtree(run_dir / "tensorboard")
    assert run_main(report.main, [run_dir, "--tensorboard"]) == 2
    assert "fits.csv missing" in capsys.readouterr().err and not (run_dir / "tensorboard").exists()


@pytest.fixture
def tensorboard_server(tiny_search_run, tmp_path):
    """A real `tensorboard` on 127.0.0.1 serving the run's folder; its URL."""
    port = free_port()
    log = (tmp_path / "tensorboard.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(tiny_search_run / "tensorboard"),
                               "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/data/runs", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"tensorboard did not start: {(tmp_path / 'tensorboard.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_the_hparams_dashboard_lists_every_fit(tiny_search_run, tensorboard_server):
    from playwright.sync_api import sync_playwright

    expected = _expected_sessions(tiny_search_run)
    results = pd.read_csv(tiny_search_run / "results.csv")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()
            page.goto(f"{tensorboard_server}/#hparams")
            cells = page.locator("div.table-cell")  # the HParams table view's cells (in shadow roots)
            deadline = time.monotonic() + 60
            while not expected <= set(texts := cells.all_inner_texts()) and time.monotonic() < deadline:
                page.wait_for_timeout(500)
        finally:
            browser.close()
    assert {text for text in texts if TRIAL_ID.fullmatch(text)} == expected
    assert f"{results['mean_test_score'].max():.5f}" in texts  # the metric columns are filled in
