"""The per-run report (from files alone), its plots, and the side-by-side comparison of runs."""

from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest
from conftest import run_main, write_config

from pipeline import compare, report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run_copy(tiny_search_run, tmp_path):
    copy = tmp_path / tiny_search_run.name
    shutil.copytree(tiny_search_run, copy)
    return copy


def _leaderboard_rows(markdown: str) -> list[list[str]]:
    section = markdown.split("## Leaderboard")[1].split("##")[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]


def test_search_writes_a_report_matching_its_csv(tiny_search_run):
    markdown = (tiny_search_run / "report.md").read_text()
    results = pd.read_csv(tiny_search_run / "results.csv")
    rows = _leaderboard_rows(markdown)
    assert len(rows) == len(results) == 4
    for row, (_, expected) in zip(rows, results.iterrows()):
        assert row[0] == str(expected["rank"]) and row[1] == str(expected["batch_size"])
        assert row[2] == expected["model__init_mode"]
        assert row[3] == f"{expected['mean_test_score']:.4f} ± {expected['std_test_score']:.4f}"
    assert "Dataset used: **mnist-sample**: 300 training / 100 test samples, 784 features." in markdown
    run = json.loads((tiny_search_run / "run.json").read_text())
    assert f"**{run['test_accuracy']:.4f}**" in markdown and "## Failed candidates\n\nNone." in markdown
    confusion = pd.read_csv(tiny_search_run / "confusion_matrix.csv").set_index("true")
    assert confusion.to_numpy().sum() == 100
    assert confusion.to_numpy().trace() == round(run["test_accuracy"] * 100)

    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert {"plots/confusion.png", "plots/score_batch_size.png", "plots/score_model__init_mode.png",
            "plots/heatmap_batch_size__model__init_mode.png", "plots/history_loss.png",
            "plots/history_learning_rate.png"} <= set(images)
    for image in images:
        data = (tiny_search_run / image).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    page = (tiny_search_run / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(images) and "mnist-sample" in page


def test_report_is_rebuilt_from_csvs_alone(run_copy, capsys):
    for name in ("best_model", "journal.jsonl", "cv_results.csv", "report.md", "report.html", "plots"):
        path = run_copy / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert run_main(report.main, [run_copy]) == 0
    assert "wrote" in capsys.readouterr().out
    assert _leaderboard_rows((run_copy / "report.md").read_text())[0][0] == "1"
    assert (run_copy / "plots" / "confusion.png").read_bytes().startswith(PNG)


def test_report_says_when_the_cpu_budget_ended_the_search(run_copy):
    run = json.loads((run_copy / "run.json").read_text())
    run["budget"] = {"cpu_s": 594.0, "batches": 4, "exhausted": True, "per_batch_cpu_s": 141.0}
    (run_copy / "run.json").write_text(json.dumps(run))
    (run_copy / "config.yaml").write_text((run_copy / "config.yaml").read_text().replace(
        "budget_minutes: null", "budget_minutes: 11.0"))
    assert run_main(report.main, [run_copy]) == 0
    assert ("The CPU budget (search.budget_minutes 11.0) ended the search after 4 batch(es): 9.9 CPU minutes "
            "spent, and a batch took 2.4 on average.") in (run_copy / "report.md").read_text()


def test_report_lists_failed_candidates_and_halving_rounds(tmp_path):
    from pipeline.search import main

    config = write_config(tmp_path, optimizer={"name": "sgd", "learning_rate": 0.05},
                          schedule={"name": "exponential", "k": 0.1}, training={"epochs": 2, "batch_size": 32},
                          search={"strategy": "halving-grid", "factor": 2,
                                  "params": {"optimizer__decay": [0.0, 0.01], "model__init_mode": ["he_normal", "zeros"]}})
    assert run_main(main, ["--config", config, "--output-dir", tmp_path / "out", "--quiet"]) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    markdown = (run_dir / "report.md").read_text()
    failed = markdown.split("## Failed candidates")[1].split("##")[0]
    assert failed.count("cannot be combined with optimizer decay") == 2
    assert "plots/halving_rounds.png" in markdown
    assert (run_dir / "plots" / "halving_rounds.png").read_bytes().startswith(PNG)


def test_report_errors(tmp_path):
    assert run_main(report.main, [tmp_path / "missing"]) == 2
    (tmp_path / "half").mkdir()
    assert run_main(report.main, [tmp_path / "half"]) == 2


def test_compare_puts_leaderboards_side_by_side(tiny_search_run, run_copy, tmp_path, capsys):
    out = tmp_path / "compare.csv"
    assert run_main(compare.main, [tiny_search_run, run_copy, "--top", "3", "--out", out]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out)
    assert list(table.columns) == ["rank", tiny_search_run.name, f"{run_copy.name} (2)"]
    assert table["rank"].tolist() == [1, 2, 3]
    best = pd.read_csv(tiny_search_run / "results.csv").iloc[0]
    assert table.iloc[0, 1] == (f"batch_size={best['batch_size']}, init_mode={best['model__init_mode']}: "
                                f"{best['mean_test_score']:.4f} +- {best['std_test_score']:.4f}")
    assert table.iloc[0, 1] == table.iloc[0, 2]
    assert "best CV score" in printed and "test scores" in printed and "accuracy 0." in printed
