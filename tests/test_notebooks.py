"""Every tutorial notebook runs top to bottom, headless, with tiny settings on the real mini dataset."""

import importlib.metadata
import os
import pathlib
import re
import subprocess
import sys
import tomllib

import background
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
        assert 'pip", "install", "-q", f"introspective-tf @ git+{REPO_URL}@{BRANCH}"' in first_code.source, path.name


def test_each_tutorial_states_its_runtime_on_a_cpu_and_has_no_outputs():
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        assert "**Runtime: CPU" in notebook.cells[0].source, path.name  # said in the opening cell
        assert "accelerator" not in notebook.metadata, path.name  # Colab opens it on the runtime it states
        code = [c for c in notebook.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), path.name  # stored without outputs


def _install_cell(path: pathlib.Path) -> str:
    return next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code").source


def test_the_install_cell_is_the_same_in_every_notebook():
    cells = {path.name: _install_cell(path) for path in NOTEBOOKS}
    first = cells[NOTEBOOKS[0].name]
    assert first.count("REPO_URL = ") == 1 and first.count("BRANCH = ") == 1  # the address is set in one place
    assert all(cell == first for cell in cells.values()), [name for name, cell in cells.items() if cell != first]


PLACEHOLDER_SENTENCE = (
    "To install the project, set REPO_URL in the first code cell to the address of its git "
    "repository or of your fork (it still holds the placeholder OWNER) and run the notebook again."
)


def _run_install_cell(monkeypatch) -> dict:
    """The install cell's names, from running it in notebooks/ of this checkout (it installs nothing there)."""
    monkeypatch.chdir(REPO / "notebooks")
    monkeypatch.setattr(sys, "path", list(sys.path))
    names: dict = {}
    exec(_install_cell(NOTEBOOKS[0]), names)
    return names


def test_the_install_cell_supports_the_tensorflow_versions_pyproject_does(monkeypatch):
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = next(d for d in dependencies if re.match(r"tensorflow[<>=]", d))
    assert re.fullmatch(r"tensorflow>=\d+\.\d+,<\d+\.\d+", declared), declared  # the form the cell's check reads
    bounds = [tuple(int(n) for n in pair) for pair in re.findall(r"(\d+)\.(\d+)", declared)]
    names = _run_install_cell(monkeypatch)
    assert list(names["SUPPORTED_TENSORFLOW"]) == bounds, declared


@pytest.mark.parametrize(
    "version,kept",
    [("2.16.1", True), ("2.21.0", True), ("2.21.0rc1", True), ("2.15.1", False), ("2.22.0", False), (None, False)],
)
def test_the_install_cell_keeps_a_supported_tensorflow(monkeypatch, version, kept):
    """Colab's TensorFlow is pinned in the pip command (so not reinstalled) only when it is in the range."""
    names = _run_install_cell(monkeypatch)

    def installed(package):
        if version is None:
            raise importlib.metadata.PackageNotFoundError(package)
        return version

    monkeypatch.setattr(importlib.metadata, "version", installed)
    assert names["supported_tensorflow"]() == (version if kept else None)


HIDE_THE_INSTALLED_PACKAGE = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "") + repr(f)]
sys.path[:] = [p for p in sys.path if "editable" not in p]
import importlib.util
assert importlib.util.find_spec("introspective_tf") is None
"""


# One notebook: the install cell is the same in every notebook (test_the_install_cell_is_the_same_in_every_notebook),
# and it is the only cell that runs here.
@pytest.mark.slow
def test_outside_a_checkout_the_placeholder_stops_the_notebook_with_one_sentence(tmp_path, monkeypatch):
    """Run from a folder outside any checkout, with the package not importable: one sentence, no traceback,
    and no later cell runs (nothing is cloned or installed)."""
    path = NOTEBOOKS[0]
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


@background.fixture
def executed_notebooks(folder: pathlib.Path) -> dict:
    """{notebook path: (the executed notebook, its figures added, whether an export was there before it, the
    output folder)}: the three notebooks run in order in one output folder, as for a user who runs them in
    order (02 reuses 01's export), in the background (tests/background.py; `background.each`: a failing
    notebook fails only its own test)."""
    from conftest import MINI

    if not (MINI / "train").is_dir():
        pytest.skip(f"real data not found at {MINI} (set INTROSPECTIVE_DATA)")
    outputs = folder / "outputs"
    env = {
        **os.environ,
        "INTROSPECTIVE_NOTEBOOK_QUICK": "1",
        "INTROSPECTIVE_NOTEBOOK_DATASET": f"folder:{MINI}",
        "INTROSPECTIVE_NOTEBOOK_OUTPUT": str(outputs),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # The kernel spec runs `python`: make that this interpreter, whatever the PATH.
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    }

    def execute(path: pathlib.Path) -> tuple:
        exported_before = (outputs / "export" / "saved_model.pb").is_file()
        figures_before = set(outputs.rglob("*.png"))
        notebook = nbformat.read(path, as_version=4)
        client = NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        )
        client.execute(env=env)  # raises on any failing cell
        return notebook, set(outputs.rglob("*.png")) - figures_before, exported_before, outputs

    return background.each(NOTEBOOKS, execute)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: pathlib.Path, executed_notebooks):
    notebook, new_figures, exported_before, output_folder = executed_notebooks[path]
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "every tutorial shows at least one figure"
    assert new_figures, "figures are also written to the output folder"
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "INFO:" not in printed and "cuInit" not in printed, printed  # no start-up or INFO noise
    if path.name.startswith("02_") and exported_before:
        assert f"reusing {output_folder / 'export'}" in printed  # notebook 01's model, not a new one
