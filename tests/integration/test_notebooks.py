"""Both notebooks run top to bottom (nbclient) against a tiny run; any cell error fails the test."""

from __future__ import annotations

import nbformat
import pytest
from conftest import PROJECT
from nbclient import NotebookClient


@pytest.mark.parametrize("name", ["review_results.ipynb", "seed_tutorial.ipynb"])
def test_notebook_executes(name, tiny_search_run, tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_RUN_DIR", str(tiny_search_run))
    monkeypatch.setenv("PIPELINE_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("PIPELINE_NOTEBOOK_QUICK", "1")
    path = PROJECT / "notebooks" / name
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "commit without outputs"
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    text = "\n".join(str(o.get("text", "")) for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    if name == "review_results.ipynb":
        assert "test accuracy:" in text and str(tiny_search_run) in text
        assert any("image/png" in o.get("data", {}) for c in notebook.cells for o in c.get("outputs", []))
    else:
        assert "Best: " in text and "mnist-sample" in text
