"""The notebooks run headless (small size) and fail the suite if any cell fails."""
import os

import nbformat
import pytest
from nbclient import NotebookClient

HERE = os.path.join(os.path.dirname(__file__), "..", "..", "notebooks")


@pytest.mark.parametrize("name", ["quickstart", "ratio_sweep", "official_checkpoint",
                                  pytest.param("pretrained_cascade", marks=pytest.mark.slow)])
def test_notebook_runs(name, monkeypatch, tmp_path):
    monkeypatch.setenv("C3_NOTEBOOK_SIZE", "tiny")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("C3_CHECKPOINT", raising=False)
    notebook = nbformat.read(os.path.join(HERE, f"{name}.ipynb"), as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert not errors
