"""Short real runs of train.py with every baseline: training, results, export; kd takes its teacher from
a file, dml trains several networks and exports the first."""

import json
import subprocess
import sys

import background
import keras
import numpy as np
import pytest
import tensorflow as tf
from commands import run_concurrently
from conftest import REPO
from test_end_to_end import _command

from introspective_tf import models

pytestmark = pytest.mark.slow  # real train.py runs and an export


# An (untrained) CIFAR-shaped teacher exported as a SavedModel: kd only needs its predictions.
TEACHER = (
    "import sys, keras; from introspective_tf import export, models; keras.utils.set_random_seed(3); "
    "export.export_classifier(models.small_cnn((32, 32, 3), 10), sys.argv[1])"
)


FLAGS = [
    ("--method=kd", "--kd_target=shuffled_non_gt", "--alpha=0.9"),
    ("--method=dml", "--peers=2"),
    ("--method=label_smoothing", "--smoothing=0.2"),
    ("--method=confidence_penalty", "--penalty=0.2"),
    ("--method=pskd", "--alpha=0.8"),
    ("--method=tfkd_reg", "--alpha=0.1", "--temperature=20", "--multiplier=10"),
]


@background.fixture
def baseline_runs(folder):
    """{flags: (train.py's CompletedProcess, its folder)} for each baseline's run, and None: the kd run without
    a teacher. The commands run as users run them, two at a time (tests/commands.py), in the background
    (tests/background.py), after a process that exports kd's teacher."""
    from conftest import MINI

    if not (MINI / "train").is_dir():
        pytest.skip("real data not found")
    (folder / "teacher").mkdir()
    teacher_export = folder / "teacher" / "export"
    done = subprocess.run(
        [sys.executable, "-c", TEACHER, str(teacher_export)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    folders = {flags: folder / flags[0][len("--method=") :] for flags in FLAGS}
    folders[None] = folder / "kd_without_teacher"
    commands = [
        _command(
            folders[flags],
            f"folder:{MINI}",
            "--epochs=2",
            "--steps_per_epoch=3",
            "--batch_size=32",
            *([f"--teacher={teacher_export}"] if flags[0] == "--method=kd" else []),  # only kd takes a teacher
            *flags,
        )
        for flags in FLAGS
    ] + [_command(folders[None], f"folder:{MINI}", "--epochs=1", "--method=kd")]
    results = run_concurrently(commands, cwd=REPO, timeout=600)
    return {flags: (result, folders[flags]) for flags, result in zip([*FLAGS, None], results)}


@pytest.mark.parametrize("flags", FLAGS, ids=lambda flags: " ".join(flags))
def test_train_py_trains_and_exports_the_first_network(baseline_runs, flags):
    result, tmp_path = baseline_runs[flags]
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["method"] == flags[0].split("=")[1] and len(results["train_loss_history"]) == 2
    given = dict(flag[2:].split("=") for flag in flags[1:])
    assert {k: str(results["config"]["hparams"][k]) for k in given} == {
        k: str(float(v)) if k != "peers" and "target" not in k else v for k, v in given.items()
    }
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    trained = keras.models.load_model(tmp_path / "run" / "model.keras")
    served = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(
        served["probabilities"].numpy(), tf.nn.softmax(trained(images)).numpy(), rtol=1e-4, atol=1e-6
    )
    assert trained.count_params() == models.small_cnn((32, 32, 3), 10).count_params()  # one network, not the peers


def test_kd_without_a_teacher_is_one_line(baseline_runs):
    result, _ = baseline_runs[None]
    assert result.returncode != 0 and "kd needs a teacher" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
