"""Provenance: the training-code hash changes with what the code does, not with its comments or defaults."""

import shutil

import pytest

from introspective_tf.training import provenance


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    shutil.copytree(provenance.PACKAGE_DIR, root / "introspective_tf", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE_DIR", str(root / "introspective_tf"))
    monkeypatch.setattr(provenance, "REPOSITORY_DIR", str(root))
    return root / "introspective_tf"


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_training_code_is_the_package_without_tools_and_other_methods():
    files = provenance.training_code_files("kd.py")
    assert "introspective_tf/training/data.py" in files and "introspective_tf/methods/kd.py" in files
    assert "introspective_tf/methods/base.py" in files and "introspective_tf/teacher.py" in files
    assert not any(
        name in f for f in files for name in ("compare.py", "summarize.py", "methods/dml.py", "methods/__init__.py")
    )


def test_code_hash_ignores_comments_docstrings_and_method_defaults_but_not_code(package_copy):
    before = provenance.code_hash("label_smoothing.py")
    data_module = package_copy / "training" / "data.py"
    _edit(data_module, '"""Input pipelines', '"""Reworded: input pipelines')
    _edit(data_module, "    def fix(image, label):", "    def fix(image, label):  # a comment")
    _edit(
        package_copy / "methods" / "label_smoothing.py",
        "smoothing: UnitInterval = 0.1",
        "smoothing: UnitInterval = 0.2",
    )
    _edit(package_copy / "methods" / "dml.py", "Range(2)] = 2", "Range(2)] = 3")  # another method
    assert provenance.code_hash("label_smoothing.py") == before
    _edit(
        package_copy / "methods" / "label_smoothing.py",
        "(1.0 - smoothing) * target",
        "(1.0 - smoothing) * target * 1.0",
    )
    assert provenance.code_hash("label_smoothing.py") != before


def test_record_names_the_commit_machine_and_date():
    origin = provenance.record("standard.py")
    assert len(origin["code_hash"]) == 16 and origin["date"][:2] == "20"
    assert origin["machine"]["cpu_count"] >= 1 and origin["machine"]["tensorflow"]
    assert origin["git_commit"] is None or len(origin["git_commit"]) == 40


def test_a_method_built_on_another_methods_code_hashes_that_code_too():
    from introspective_tf.training import provenance as p

    assert "introspective_tf/methods/introspective.py" in p.training_code_files("pskd_explained.py")
    assert "introspective_tf/methods/introspective.py" not in p.training_code_files("kd.py")
