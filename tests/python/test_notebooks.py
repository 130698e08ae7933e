"""The notebooks: each runs headless in the tiny configuration and shows its plots as images, no cell floods the
notebook with outputs, each .ipynb is in sync with its jupytext .py twin, and the committed copies stay small.

Executed copies are written to build/notebooks/, where the documentation build (scripts/docs.sh) reuses them.
"""
import os

import nbformat
import pytest

jupytext = pytest.importorskip("jupytext")
from nbclient import NotebookClient  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.join(ROOT, "notebooks")
EXECUTED = os.path.join(ROOT, "build", "notebooks")
NAMES = ["quickstart", "ratio_sweep", "long_documents", "official_checkpoint", "pretrained_cascade"]
# Plots each notebook draws; without C3_CHECKPOINT the official checkpoint's notebook draws none.
IMAGES = {"quickstart": 3, "ratio_sweep": 4, "long_documents": 2, "official_checkpoint": 0, "pretrained_cascade": 1}
MAX_OUTPUTS_PER_CELL = 20


def images(cell) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


@pytest.mark.parametrize("name", [name if name != "pretrained_cascade" else pytest.param(name, marks=pytest.mark.slow)
                                  for name in NAMES])
def test_notebook_runs_and_shows_its_plots(name, monkeypatch, tmp_path):
    monkeypatch.setenv("C3_NOTEBOOK_SIZE", "tiny")
    monkeypatch.setenv("MPLBACKEND", "Agg")  # headless; the notebooks themselves choose no backend
    monkeypatch.delenv("C3_CHECKPOINT", raising=False)
    notebook = nbformat.read(os.path.join(HERE, f"{name}.ipynb"), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None  # the committed copy may hold a full run's outputs
    NotebookClient(notebook, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [output for cell in code_cells for output in cell.outputs if output.output_type == "error"]
    assert not errors
    assert not [output for cell in code_cells for output in cell.outputs
                if "text/plain" in output.get("data", {}) and output.data["text/plain"].startswith("<Figure")]
    assert sum(images(cell) for cell in code_cells) == IMAGES[name]
    crowded = {index: len(cell.outputs) for index, cell in enumerate(code_cells)
               if len(cell.outputs) > MAX_OUTPUTS_PER_CELL}
    assert not crowded, f"cells with more than {MAX_OUTPUTS_PER_CELL} outputs: {crowded}"
    os.makedirs(EXECUTED, exist_ok=True)
    nbformat.write(notebook, os.path.join(EXECUTED, f"{name}.ipynb"))


@pytest.mark.parametrize("name", NAMES)
def test_notebook_pair_in_sync(name):
    """The .py (percent format, for diffs and editors) and the .ipynb hold the same cells."""
    script = jupytext.read(os.path.join(HERE, f"{name}.py"))
    notebook = nbformat.read(os.path.join(HERE, f"{name}.ipynb"), as_version=4)
    assert notebook.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    cells = lambda nb: [(cell.cell_type, cell.source.strip()) for cell in nb.cells]  # noqa: E731
    assert cells(script) == cells(notebook), f"run: jupytext --sync notebooks/{name}.ipynb"
    sources = "\n".join(source for _, source in cells(notebook))
    assert "matplotlib.use(" not in sources and "%matplotlib" not in sources, "notebooks choose no backend"


def test_committed_notebooks_are_small():
    for name in NAMES:
        assert os.path.getsize(os.path.join(HERE, f"{name}.ipynb")) < 1_000_000, name
    assert sorted(f for f in os.listdir(HERE) if not f.startswith(".")) == sorted([f"{name}.ipynb" for name in NAMES] + [f"{name}.py" for name in NAMES])
