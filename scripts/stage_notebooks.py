"""Executed notebooks: for the documentation site, and for committing with their plots.

    python3 scripts/stage_notebooks.py stage notebooks docs/notebooks
        puts an executed copy of every notebooks/NAME.ipynb where the site reads them, taking in this order: the
        committed notebook when it holds outputs (executed in the full configuration); else the copy the test
        suite executed (build/notebooks/NAME.ipynb, tiny configuration) when its code is the committed code; else
        the notebook executed here in the tiny configuration (and kept in build/notebooks for the next build).
    python3 scripts/stage_notebooks.py execute notebooks/NAME.ipynb [--tiny]
        executes a notebook in place (full configuration unless --tiny), to commit it with its outputs.

A finished progress bar is a widget whose saved text still reads 0%; static copies drop it.
"""
import glob
import os
import shutil
import sys

import nbformat
from nbclient import NotebookClient

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
EXECUTED_BY_TESTS = os.path.join(ROOT, "build", "notebooks")
WIDGET = "application/vnd.jupyter.widget-view+json"


def code(notebook) -> list:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def has_outputs(notebook) -> bool:
    return any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


def drop_progress_widgets(notebook):
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [output for output in cell.outputs if WIDGET not in output.get("data", {})]
    notebook.metadata.pop("widgets", None)
    return notebook


def execute(path: str, tiny: bool):
    notebook = nbformat.read(path, as_version=4)
    os.environ["MPLBACKEND"] = "Agg"
    os.environ.pop("C3_CHECKPOINT", None)
    if tiny:
        os.environ["C3_NOTEBOOK_SIZE"] = "tiny"
    else:
        os.environ.pop("C3_NOTEBOOK_SIZE", None)
    NotebookClient(notebook, timeout=7200, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}}).execute()
    return drop_progress_widgets(notebook)


def stage(source: str, destination: str) -> None:
    os.makedirs(destination, exist_ok=True)
    for path in sorted(glob.glob(os.path.join(source, "*.ipynb"))):
        name = os.path.basename(path)
        target = os.path.join(destination, name)
        committed = nbformat.read(path, as_version=4)
        tested = os.path.join(EXECUTED_BY_TESTS, name)
        if has_outputs(committed):
            shutil.copyfile(path, target)
            print(f"stage_notebooks: {name}: committed outputs (full configuration)")
            continue
        if os.path.exists(tested) and code(nbformat.read(tested, as_version=4)) == code(committed):
            nbformat.write(drop_progress_widgets(nbformat.read(tested, as_version=4)), target)
            print(f"stage_notebooks: {name}: executed by the test suite (tiny configuration)")
            continue
        print(f"stage_notebooks: {name}: executing (tiny configuration)", flush=True)
        executed = execute(path, tiny=True)
        os.makedirs(EXECUTED_BY_TESTS, exist_ok=True)
        nbformat.write(executed, tested)  # the next build reuses it
        nbformat.write(executed, target)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "stage":
        stage(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 3 and sys.argv[1] == "execute":
        nbformat.write(execute(sys.argv[2], tiny="--tiny" in sys.argv[3:]), sys.argv[2])
    else:
        sys.exit(__doc__)
