"""Short real runs of train.py on ../shared/data/cifar10-mini: training, results, export, serving."""

import json
import os
import re
import subprocess
import sys

import background
import keras
import numpy as np
import pytest
import tensorflow as tf
from commands import run_concurrently, run_forked
from conftest import REPO

pytestmark = pytest.mark.slow  # real train.py runs


def _command(tmp_path, dataset, *flags):
    return [
        sys.executable,
        str(REPO / "train.py"),
        f"--dataset={dataset}",
        "--model=small_cnn",
        f"--output_dir={tmp_path / 'run'}",
        f"--export_dir={tmp_path / 'export'}",
        "--verbose=2",
        "--explanation_images_every=0",  # drawn where it is tested (test_explanation_images.py)
        *flags,
    ]


METHODS = ["standard", "introspective"]


@background.fixture
def end_to_end_runs(folder):
    """{method: its run's folder}: a short train.py run of each method, both at once (tests/commands.py),
    in the background (tests/background.py)."""
    from conftest import MINI

    if not (MINI / "train").is_dir():
        pytest.skip("real data not found")
    folders = {method: folder / method for method in METHODS}
    for path in folders.values():
        path.mkdir()
    commands = [
        _command(
            folders[method],
            f"folder:{MINI}",
            f"--method={method}",
            "--epochs=4",
            "--batch_size=50",
            "--learning_rate=0.05",
            *(["--similarity_temperature=0.5", "--temperature=2"] if method == "introspective" else []),
        )
        for method in METHODS
    ]
    for method, result in zip(METHODS, run_concurrently(commands, cwd=REPO, timeout=600)):
        assert result.returncode == 0, result.stderr[-3000:]
        (folders[method] / "stderr.txt").write_text(result.stderr)
    return folders


@pytest.fixture(params=METHODS)
def trained(request, end_to_end_runs):
    return request.param, end_to_end_runs[request.param]


def test_training_prints_no_start_up_noise_or_warnings_of_our_making(trained):
    _, tmp_path = trained
    stderr = (tmp_path / "stderr.txt").read_text()
    noise = ["oneDNN custom operations", "absl::InitializeLog", "shuffle=True", "Warning", "Constructing tf.data"]
    if not os.path.exists("/proc/driver/nvidia"):  # no GPU driver: CUDA's start-up lines say nothing
        noise += ["cuda drivers", "cuInit"]
    assert not [line for line in stderr.splitlines() if any(n in line for n in noise)], stderr[-3000:]


def test_results_json_has_the_promised_fields(trained):
    method, tmp_path = trained
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    for key in (
        "dataset",
        "method",
        "model",
        "epochs",
        "eval_split",
        "eval_accuracy",
        "eval_loss",
        "train_seconds",
        "seconds_per_step",
        "config",
    ):
        assert key in results, key
    assert results["method"] == method and results["eval_split"] == "test" and results["epochs"] == 4
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and results["seconds_per_step"] > 0
    assert results["config"]["batch_size"] == 50  # every flag value is recorded
    for name in ("history.csv", "model.keras", "checkpoints/last.weights.h5", "logs"):
        assert (tmp_path / "run" / name).exists(), name


def test_training_lowers_the_training_loss(trained):
    _, tmp_path = trained
    losses = json.loads((tmp_path / "run" / "results.json").read_text())["train_loss_history"]
    assert len(losses) == 4 and losses[-1] < losses[0]


def test_export_serves_the_same_probabilities_as_the_keras_model(trained):
    _, tmp_path = trained
    images = np.random.default_rng(0).uniform(0, 255, (5, 32, 32, 3)).astype("float32")
    expected = tf.nn.softmax(keras.models.load_model(tmp_path / "run" / "model.keras")(images)).numpy()
    serving = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"]
    served = serving(images=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(served.sum(-1), 1.0, rtol=1e-5)


# On one run: both runs export their backbone with the same code (export_classifier), and the other
# export's serving signature is checked against its Keras model above.
def test_saved_model_cli_runs_the_export(end_to_end_runs):
    tmp_path = end_to_end_runs["standard"]
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run(
        [
            cli,
            "run",
            "--dir",
            str(tmp_path / "export"),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"images={tmp_path / 'images.npy'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    printed = np.array(
        [float(v) for v in re.findall(r"[-+]?\d*\.\d+(?:[eE][-+]?\d+)?", result.stdout.split("probabilities")[-1])]
    )
    serving = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"]
    expected = serving(images=tf.constant(images))["probabilities"].numpy().ravel()
    np.testing.assert_allclose(printed[: expected.size], expected, rtol=1e-3, atol=1e-6)


BAD_FLAGS = {
    "--method=teacher_free": "unknown method",
    "--model=vgg": "unknown model",
    "--dataset=imagenet_v2": "unknown dataset",
    "--alpha=1.5": "alpha must be in",
    "--epochs=-1": "epochs must be > 0",
    "--smoothing=0.2": "method 'introspective' takes no hyper-parameter 'smoothing'",
}


@background.fixture
def refused_flags(folder):
    """{flag: (train.py's CompletedProcess, its output_dir)}: each bad flag in a train.py command of its own,
    run as `python train.py ...` would be; they stop before TensorFlow computes anything, so they run in
    processes forked from one interpreter that started TensorFlow once (tests/commands.py)."""
    from conftest import MINI

    if not (MINI / "train").is_dir():
        pytest.skip("real data not found")
    folders = {flag: folder / str(number) for number, flag in enumerate(BAD_FLAGS)}
    for path in folders.values():
        path.mkdir()
    commands = [
        [
            "train.py",
            f"--dataset=folder:{MINI}",
            "--model=small_cnn",
            f"--output_dir={folders[flag] / 'run'}",
            f"--export_dir={folders[flag] / 'export'}",
            "--verbose=2",
            "--epochs=1",
            flag,
        ]
        for flag in BAD_FLAGS
    ]
    results = run_forked(commands, cwd=REPO)
    return {flag: (result, folders[flag]) for flag, result in zip(BAD_FLAGS, results)}


@pytest.mark.parametrize("flag", BAD_FLAGS)
def test_bad_flags_give_one_line_and_no_traceback(refused_flags, flag):
    result, tmp_path = refused_flags[flag]
    assert result.returncode != 0
    assert BAD_FLAGS[flag] in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "run").exists()  # no empty run folder under the name the next run uses


def test_results_json_has_calibration_and_a_reliability_diagram(trained):
    _, tmp_path = trained
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["eval_nll"] == pytest.approx(results["eval_loss"], rel=1e-3)  # both are the test cross-entropy
    assert 0.0 < results["eval_ece"] < 1.0
    assert results["reliability_diagram"] == str(tmp_path / "run" / "reliability.png")
    assert (tmp_path / "run" / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
