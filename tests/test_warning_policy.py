"""pytest.ini's warning policy: a warning raised from the package's own modules fails the test; third-party
DeprecationWarnings and UserWarnings (TensorFlow's, Keras', ...) do not."""

import subprocess
import sys

from conftest import REPO

PROBES = """
import warnings


def _warn_from(module, category):
    code = compile("import warnings\\nwarnings.warn('probe', CATEGORY)", module, "exec")
    exec(code, {"__name__": module, "CATEGORY": category})


def test_package_deprecation():
    _warn_from("introspective_tf.probe", DeprecationWarning)


def test_package_user_warning():
    _warn_from("introspective_tf", UserWarning)


def test_package_runtime_warning():
    _warn_from("introspective_tf.methods.probe", RuntimeWarning)


def test_third_party_deprecation():
    _warn_from("tensorflow.python.probe", DeprecationWarning)


def test_third_party_user_warning():
    _warn_from("keras.src.probe", UserWarning)
"""


def test_package_warnings_fail_and_third_party_noise_does_not(tmp_path):
    (tmp_path / "test_probes.py").write_text(PROBES)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(REPO / "pytest.ini"),
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_probes.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    failed = sorted(
        line.split("::")[1].split(" ")[0] for line in result.stdout.splitlines() if line.startswith("FAILED")
    )
    assert failed == ["test_package_deprecation", "test_package_runtime_warning", "test_package_user_warning"], (
        result.stdout[-3000:]
    )
    assert "3 failed, 2 passed" in result.stdout
