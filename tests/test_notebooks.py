"""Every tutorial notebook runs top to bottom, headless, with tiny settings on the real mini dataset."""

import os
import pathlib
import subprocess
import sys

import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_three_tutorials_that_open_by_installing_the_project():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_"]
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        first_code = next(c for c in cells if c.cell_type == "code")
        assert 'pip", "install", "-q", f"introspective-tf @ git+{REPO_URL}"' in first_code.source, path.name


def _install_cell(path: pathlib.Path) -> str:
    return next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code").source


def test_the_install_cell_is_the_same_in_every_notebook():
    cells = {path.name: _install_cell(path) for path in NOTEBOOKS}
    first = cells[NOTEBOOKS[0].name]
    assert first.count("REPO_URL = ") == 1  # the project's address is set in one place
    assert all(cell == first for cell in cells.values()), [name for name, cell in cells.items() if cell != first]


PLACEHOLDER_SENTENCE = (
    "To install the project, set REPO_URL in the first code cell to the address of its git "
    "repository (it still holds the placeholder OWNER) and run the notebook again."
)


HIDE_THE_INSTALLED_PACKAGE = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "") + repr(f)]
sys.path[:] = [p for p in sys.path if "editable" not in p]
import importlib.util
assert importlib.util.find_spec("introspective_tf") is None
"""


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outside_a_checkout_the_placeholder_stops_the_notebook_with_one_sentence(path, tmp_path, monkeypatch):
    """Run from a folder outside any checkout, with the package not importable: one sentence, no traceback,
    and no later cell runs (nothing is cloned or installed)."""
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    notebook = nbformat.read(path, as_version=4)
    # As in a fresh Colab kernel: this environment's editable install of the package is not there.
    notebook.cells.insert(0, nbformat.v4.new_code_cell(HIDE_THE_INSTALLED_PACKAGE))
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    with pytest.raises(CellExecutionError):
        client.execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"][1:]
    outputs = code[0].outputs
    assert [o.output_type for o in outputs] == ["error"], outputs
    assert outputs[0].traceback == [PLACEHOLDER_SENTENCE]  # what the notebook shows: the sentence alone
    assert "Traceback" not in str(outputs) and "File " not in "".join(outputs[0].traceback)
    assert all(not cell.outputs and cell.execution_count is None for cell in code[1:])  # the notebook stopped
    assert os.listdir(tmp_path) == []  # nothing cloned


@pytest.mark.slow
def test_the_install_cell_in_a_checkout_installs_nothing(tmp_path):
    """From notebooks/ of a checkout the cell only puts the repository on sys.path (no clone, no pip)."""
    source = _install_cell(NOTEBOOKS[0])
    probe = source + "\nprint(sys.path[0])\n"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO / "notebooks",
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": ""},
    )  # no git, so a clone attempt would fail
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.samefile(result.stdout.strip(), REPO)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: pathlib.Path, tmp_path, monkeypatch, mini_dataset):
    monkeypatch.setenv("INTROSPECTIVE_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("INTROSPECTIVE_NOTEBOOK_DATASET", mini_dataset)
    monkeypatch.setenv("INTROSPECTIVE_NOTEBOOK_OUTPUT", str(tmp_path))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    # The kernel spec runs `python`: make that this interpreter, whatever the PATH.
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()  # raises on any failing cell
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "every tutorial shows at least one figure"
    assert list(tmp_path.rglob("*.png")), "figures are also written to the output folder"
