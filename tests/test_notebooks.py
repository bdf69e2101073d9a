"""Every tutorial notebook runs top to bottom, headless, with tiny settings on the real mini dataset."""

import os
import pathlib
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_three_tutorials_that_open_by_installing_the_project():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_"]
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        first_code = next(c for c in cells if c.cell_type == "code")
        assert "pip" in first_code.source and "requirements.txt" in first_code.source, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: pathlib.Path, tmp_path, monkeypatch, mini_dataset):
    monkeypatch.setenv("INTROSPECTIVE_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("INTROSPECTIVE_NOTEBOOK_DATASET", mini_dataset)
    monkeypatch.setenv("INTROSPECTIVE_NOTEBOOK_OUTPUT", str(tmp_path))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    # The kernel spec runs `python`: make that this interpreter, whatever the PATH.
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()  # raises on any failing cell
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "every tutorial shows at least one figure"
    assert list(tmp_path.rglob("*.png")), "figures are also written to the output folder"
