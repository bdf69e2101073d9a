"""The serving commands of README.md and docs/using_models.md, run as written on a model train.py exports.

The code blocks of README.md's "## Serving" section and of docs/using_models.md's "## Serving" section
run for real, from the root of a temporary copy of the repository (the package, train.py, `.venv`
linked to the running environment, `../shared/data` linked to the real data), so nothing is left in the
repository. The model is a tiny small_cnn that train.py trains on cifar10-mini and exports where it
exports by default. The only substitution is the one docs/using_models.md asks for: the export's name
in place of NAME. The README names the folder its quick start exports to, which is checked against
the run-name rule and holds a copy of the same export.
"""

import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import background
import pytest
from commands import run_forked
from conftest import DATA, REPO

from introspective_tf.training import experiment

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
ENV["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{ENV.get('PATH', '')}"  # the environment, active


def section(markdown: str, heading: str) -> str:
    """The text of `heading`'s section, up to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    match = re.search(rf"^{re.escape(heading)}\n(.*?)(?=^#{{1,{level}}} |\Z)", markdown, re.S | re.M)
    assert match, f"no section '{heading}'"
    return match.group(1)


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


README_SERVING = section((REPO / "README.md").read_text(), "## Serving")
DOCS_SERVING = section((REPO / "docs" / "using_models.md").read_text(), "## Serving")


def test_the_sections_have_commands():
    assert len(blocks(README_SERVING, "bash")) >= 1 and len(blocks(DOCS_SERVING, "bash")) >= 3
    assert "saved_models/NAME" in DOCS_SERVING and "in place of NAME" in " ".join(
        DOCS_SERVING.split()
    )  # what may be substituted
    assert "full-introspective" not in README_SERVING + DOCS_SERVING


@background.fixture
def checkout(top):
    """(root of a temporary copy of the repository with a trained export, the export's name), made in the
    background (tests/background.py)."""
    if not (DATA / "cifar10-mini" / "train").is_dir():
        pytest.skip("real data not found")
    root = top / "repo"
    root.mkdir()
    shutil.copytree(REPO / "introspective_tf", root / "introspective_tf", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "train.py", root)
    (root / ".venv").symlink_to(pathlib.Path(sys.executable).parent.parent)
    (top / "shared").mkdir()
    (top / "shared" / "data").symlink_to(DATA.resolve())
    # A tiny run with the default --export_dir (saved_models/NAME, NAME the run's name).
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--dataset=folder:../shared/data/cifar10-mini",
            "--model=small_cnn",
            "--epochs=1",
            "--steps_per_epoch=2",
            "--batch_size=32",
            "--train_limit=64",
            "--verbose=0",
        ],
        cwd=root,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    name = "cifar10-mini-small_cnn-introspective-seed0"
    assert (root / "saved_models" / name / "saved_model.pb").is_file(), os.listdir(root / "saved_models")
    return root, name


def _run(root: pathlib.Path, command: list[str], what: str) -> str:
    result = subprocess.run(command, cwd=root, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{what}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr and not re.search(r"^error:", result.stderr, re.M), result.stderr[-3000:]
    return result.stdout


def run_bash(root: pathlib.Path, code: str) -> str:
    return _run(root, ["bash", "-euo", "pipefail", "-c", code], code)


MARK = "----- next block -----"


def run_python(root: pathlib.Path, codes: list[str]) -> list[str]:
    """Runs the blocks one after the other in one interpreter (each in a fresh namespace); their outputs."""
    driver = (
        "import sys\nfor code in sys.argv[1:]:\n    print(%r, flush=True)\n"
        "    exec(compile(code, 'block', 'exec'), {'__name__': '__main__'})\n" % MARK
    )
    out = _run(root, [sys.executable, "-c", driver, *codes], "\n\n".join(codes))
    return out.split(MARK + "\n")[1:]


@background.fixture(needs=("checkout",))
def readme_serving_outputs(_, checkout):
    """What README.md's serving blocks print, run as written in the checkout (in the background,
    tests/background.py): (the folder the README names, the bash blocks' outputs, the Python blocks')."""
    root, name = checkout
    (folder,) = set(re.findall(r"saved_models/([\w.-]+)", README_SERVING))
    shutil.copytree(root / "saved_models" / name, root / "saved_models" / folder, dirs_exist_ok=True)
    outputs = [run_bash(root, code) for code in blocks(README_SERVING, "bash")]
    return folder, outputs, run_python(root, blocks(README_SERVING, "python"))


@pytest.mark.slow
def test_readme_serving_commands_run_as_written(readme_serving_outputs):
    folder, outputs, printed = readme_serving_outputs
    # The folder the README uses is where the quick start's training commands export.
    quick_start = re.findall(
        r"train\.py (--dataset=\S+) (--method=\S+)", section((REPO / "README.md").read_text(), "## Quick start")
    )
    assert quick_start
    for dataset, method in quick_start:
        config = experiment.ExperimentConfig(dataset=dataset.split("=", 1)[1], method=method.split("=", 1)[1])
        assert f"saved_models/{config.name}" in README_SERVING
    assert f"saved_models/{folder}" in README_SERVING
    assert "probabilities" in outputs[-1]  # saved_model_cli printed the result
    assert len(printed) == len(blocks(README_SERVING, "python")) == 1


@background.fixture(needs=("checkout", "readme_serving_outputs"))
def using_models_serving_outputs(_, checkout, __):
    """What docs/using_models.md's serving blocks print, run as written in the checkout after README.md's
    (in the background, tests/background.py), NAME replaced by the export's name: ({bash block: its output},
    the Python blocks' outputs). The shell commands run in order, then the Python blocks, which read what
    the commands write (images.npy, model.onnx) and write nothing the commands read."""
    root, name = checkout

    def substituted(code):
        return code.replace("saved_models/NAME", f"saved_models/{name}")

    shell = {code: run_bash(root, substituted(code)) for code in blocks(DOCS_SERVING, "bash")}
    return shell, run_python(root, [substituted(code) for code in blocks(DOCS_SERVING, "python")])


@pytest.mark.slow
def test_using_models_serving_commands_run_as_written(checkout, using_models_serving_outputs):
    root, _ = checkout
    shell, printed = using_models_serving_outputs
    assert (root / "model.onnx").is_file() and len(printed) == len(blocks(DOCS_SERVING, "python")) == 2
    (client,) = [out for code, out in shell.items() if "introspective_tf.tools.serving" in code]
    lines = client.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith(
        "../shared/data/cifar10-mini/test/cat/0100.jpg: "
    )  # 2 files + 2 array rows
    assert re.fullmatch(r"\[\d \d\]\n", printed[0]) and printed[0] == printed[1]  # TFSMLayer and onnxruntime agree


def documented_python_commands() -> list[tuple[str, list[str]]]:
    """(file, argv after the interpreter) of every `python train.py`, `python explain.py` and
    `python -m introspective_tf.*` command in the fenced bash blocks of README.md and docs/."""
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in blocks(path.read_text(), "bash"):
            for line in block.replace("\\\n", " ").splitlines():
                for command in line.split("&&"):
                    words = shlex.split(command, comments=True)
                    while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value prefixes
                        words = words[1:]
                    if not words or not words[0].endswith(("python", "python3")) or len(words) < 2:
                        continue
                    script = words[1:]
                    if script[0] in ("train.py", "explain.py") or (
                        script[0] == "-m" and script[1].startswith("introspective_tf.")
                    ):
                        if (path.name, script) not in found:
                            found.append((path.name, script))
    return found


@background.fixture
def documented_flag_checks(folder):
    """[(file, argv, CompletedProcess)]: each documented command as `python ARGV --only_check_args` would run
    it, as `__main__` in a process of its own, forked from one interpreter that started TensorFlow once
    (tests/commands.py): nothing runs past the flags. In the background (tests/background.py)."""
    commands = documented_python_commands()
    results = run_forked([[*argv, "--only_check_args"] for _, argv in commands], cwd=REPO, env=ENV)
    return [(name, argv, result) for (name, argv), result in zip(commands, results)]


@pytest.mark.slow
def test_every_documented_command_has_valid_flags(documented_flag_checks):
    """Each documented command, as written, parses: flag names, types and required flags (absl's
    --only_check_args stops before anything runs, so long trainings and multi-worker setups are checked too)."""
    assert len(documented_flag_checks) >= 10
    assert {argv[0] for _, argv, _ in documented_flag_checks} >= {"train.py", "explain.py", "-m"}
    failures = [
        f"{name}: {' '.join(argv)}\n{result.stderr.strip()[-500:]}"
        for name, argv, result in documented_flag_checks
        if result.returncode != 0
    ]
    assert not failures, "\n".join(failures)
