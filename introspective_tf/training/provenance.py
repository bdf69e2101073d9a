"""Where a result came from: the code version, the date and the machine, recorded with every run.

A run's numbers depend on the code that trained it, so `results.json` records

* `git_commit`: the commit checked out when the run started (`None` outside a git checkout), and
  `git_dirty`: whether the training code differed from that commit;
* `code_hash`: a hash of the *training code* -- the package's modules that can change what a run
  learns (data, models, explanations, soft targets, the run's own method, the training loop), not
  `tools/` that only read results (compare, summarize, benchmark, ...) nor the other methods. It
  hashes the code's syntax tree without docstrings, comments and the default values of the methods'
  hyper-parameters: every run records its resolved hyper-parameters, so a new default (or a new
  comment) changes no finished run, while any change to what the code does changes the hash.

`compare` reuses a finished run only when its configuration and its `code_hash` both match the
current ones (or the current code was shown to train bit-identically: `equivalence.py`), so a table
never mixes runs of different training code; the commit says which code that was.
"""

from __future__ import annotations

import ast
import datetime
import functools
import hashlib
import os
import platform
import subprocess
import sys

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # introspective_tf/
REPOSITORY_DIR = os.path.dirname(PACKAGE_DIR)

# Outside `tools/`, the modules that never change what a run learns (they record or serve it).
NOT_TRAINING = (
    "export.py",
    "quiet.py",
    "training/explanation_images.py",  # draws explanations to TensorBoard; a run trains identically without it
    "training/provenance.py",
    "training/records.py",
    "training/run_flags.py",  # flags -> ExperimentConfig, which every run records in full
    "training/run_lock.py",  # one process per run folder
)


def _method_files(method_file: str) -> set[str]:
    """`method_file` and the other method files it imports (a method built on another's code), transitively."""
    found, todo = set(), [method_file]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        path = os.path.join(PACKAGE_DIR, "methods", name)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("introspective_tf.methods."):
                todo.append(node.module.rsplit(".", 1)[1] + ".py")
    return found


def training_code_files(method_file: str | None = None) -> list[str]:
    """The package's source files that determine a run, relative to the repository: everything but
    `tools/`, `NOT_TRAINING` and the methods other than `method_file` (e.g. "kd.py"; None: every method)
    and the method files it imports."""
    own = _method_files(method_file) if method_file else set()
    files = []
    for directory, _, names in os.walk(PACKAGE_DIR):
        in_package = os.path.relpath(directory, PACKAGE_DIR)
        if in_package.split(os.sep)[0] == "tools":
            continue
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            if os.path.normpath(os.path.join(in_package, name)) in NOT_TRAINING:
                continue
            in_methods = in_package == "methods"
            if in_methods and name not in ("base.py", "__init__.py") and method_file and name not in own:
                continue
            if in_methods and name == "__init__.py":
                continue  # the registry: names only
            files.append(os.path.relpath(os.path.join(directory, name), REPOSITORY_DIR))
    return sorted(files)


def _normalised_source(path: str, is_method: bool) -> str:
    """The module's syntax tree without docstrings (and, for a method, its constructor's defaults)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
        if is_method and isinstance(node, ast.FunctionDef) and node.name == "__init__":
            node.args.defaults = [ast.Constant(None) for _ in node.args.defaults]
            node.args.kw_defaults = [None if d is None else ast.Constant(None) for d in node.args.kw_defaults]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def code_hash(method_file: str | None = None) -> str:
    """sha256 (first 16 hex digits) of the training code's files: names and normalised syntax trees."""
    digest = hashlib.sha256()
    for relative in training_code_files(method_file):
        digest.update(relative.encode())
        is_method = os.path.basename(os.path.dirname(relative)) == "methods" and not relative.endswith("base.py")
        source = _normalised_source(os.path.join(REPOSITORY_DIR, relative), is_method)
        digest.update(hashlib.sha256(source.encode()).digest())
    return digest.hexdigest()[:16]


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", REPOSITORY_DIR, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@functools.lru_cache(maxsize=None)
def _machine() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    import keras
    import tensorflow as tf

    accelerators = [d.device_type for d in tf.config.list_physical_devices() if d.device_type != "CPU"]
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "accelerators": sorted(set(accelerators)),
        "system": f"{platform.system()} {platform.machine()}",
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def record(method_file: str | None = None) -> dict:
    """The provenance of a run made now with the code on disk."""
    files = training_code_files(method_file)
    commit = _git("rev-parse", "HEAD")
    dirty = None if commit is None else bool(_git("status", "--porcelain", "--", *files))
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "code_hash": code_hash(method_file),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(),
    }
