"""The serving client and saved_model_cli on a real export, and the client's refusal of inputs that do not fit."""

import os
import re
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from commands import run_concurrently
from conftest import MINI, REPO

from introspective_tf import export, models
from introspective_tf.tools import serving

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small_cnn export with class names, and four real test images (one per class)."""
    if not (MINI / "test").is_dir():
        pytest.skip("real data not found")
    keras.utils.set_random_seed(0)
    backbone = models.build("small_cnn", (32, 32, 3), 10)
    class_names = sorted(os.listdir(MINI / "test"))
    path = export.export_classifier(backbone, str(tmp_path_factory.mktemp("serving") / "export"), class_names)
    files = [str(sorted((MINI / "test" / name).iterdir())[0]) for name in class_names[:4]]
    return path, backbone, class_names, files


def _pixels(files):
    return np.stack([tf.io.decode_image(tf.io.read_file(f)).numpy() for f in files]).astype("float32")


def _client(*args):
    return [sys.executable, "-m", "introspective_tf.tools.serving", *args]


@pytest.fixture(scope="module")
def command_runs(exported, tmp_path_factory):
    """The client's and saved_model_cli's runs that the slow tests below read, two at a time
    (tests/commands.py): {name: (CompletedProcess, folder of its input files)}."""
    path, _, _, files = exported
    folders = {name: tmp_path_factory.mktemp(name) for name in ("classify", "cli", "gray", "non_finite")}
    np.save(folders["cli"] / "images.npy", _pixels(files))
    np.save(folders["gray"] / "gray.npy", np.zeros((28, 28, 1), "uint8"))
    images = np.full((2, 32, 32, 3), 128.0, "float32")
    images[1, 5, 7, 2] = np.nan
    np.save(folders["non_finite"] / "bad.npy", images)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    argv = {
        "classify": _client(f"--model_path={path}", "--top_k=2", *files),
        "cli": [
            cli,
            "run",
            "--dir",
            path,
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"images={folders['cli'] / 'images.npy'}",
        ],
        "gray": _client(f"--model_path={path}", files[0], str(folders["gray"] / "gray.npy")),
        "non_finite": _client(f"--model_path={path}", str(folders["non_finite"] / "bad.npy")),
    }
    results = run_concurrently(list(argv.values()), cwd=REPO, env=ENV, timeout=300)
    return {name: (result, folders[name]) for name, result in zip(argv, results)}


@pytest.mark.slow
def test_client_prints_class_names_and_the_models_probabilities(exported, command_runs):
    path, backbone, class_names, files = exported
    result, _ = command_runs["classify"]
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Warning" not in result.stderr, result.stderr[-2000:]  # e.g. runpy's about sys.modules
    lines = result.stdout.strip().splitlines()
    expected = tf.nn.softmax(backbone(_pixels(files))).numpy()
    assert len(lines) == len(files)
    for line, file, row in zip(lines, files, expected):
        best = np.argsort(-row)[:2]
        assert line == f"{file}: {class_names[best[0]]} {row[best[0]]:.3f}, {class_names[best[1]]} {row[best[1]]:.3f}"


@pytest.mark.slow
def test_saved_model_cli_agrees_with_the_client(exported, command_runs):
    path, _, _, files = exported
    result, _ = command_runs["cli"]
    assert result.returncode == 0, result.stderr[-2000:]
    printed = [
        float(v) for v in re.findall(r"[-+]?\d*\.\d+(?:[eE][-+]?\d+)?", result.stdout.split("probabilities")[-1])
    ]
    served = serving.Classifier(path).probabilities(_pixels(files))
    np.testing.assert_allclose(np.array(printed[: served.size]).reshape(served.shape), served, rtol=1e-3, atol=1e-6)


def test_export_carries_the_keras_model(exported):
    path, backbone, _, files = exported
    reloaded = keras.models.load_model(os.path.join(path, "assets.extra", export.KERAS_MODEL))
    np.testing.assert_allclose(reloaded(_pixels(files)), backbone(_pixels(files)), rtol=1e-5, atol=1e-5)


def test_client_resizes_only_when_asked(exported, tmp_path):
    path, _, _, files = exported
    small = tf.image.resize(_pixels(files[:1])[0], (20, 24)).numpy().astype("uint8")
    tf.io.write_file(str(tmp_path / "small.png"), tf.io.encode_png(small))
    classifier = serving.Classifier(path)
    with pytest.raises(serving.ConfigError, match=r"shape \[20, 24, 3\] does not fit the model's input \[32, 32, 3\]"):
        classifier.read(str(tmp_path / "small.png"))
    assert classifier.read(str(tmp_path / "small.png"), resize=True).shape == (1, 32, 32, 3)


@pytest.mark.parametrize(
    "make_input,message",
    [
        (
            lambda d: np.save(d / "x.npy", np.zeros((2, 28, 28, 1), "float32")),
            r"x.npy: shape \[28, 28, 1\] does not fit",
        ),
        (lambda d: np.save(d / "x.npy", np.array([["a", "b"]])), "x.npy: dtype <U1 is not pixel values"),
        (lambda d: (d / "x.npy").write_text("not an image"), "x.npy: not a plain .npy array"),
        (lambda d: (d / "x.jpg").write_text("not an image"), "x.jpg: not an image TensorFlow can decode"),
        (lambda d: None, "no such file"),
        (
            lambda d: np.save(
                d / "x.npy",
                np.where(np.eye(32)[None, :, :, None] > 0, np.nan, 100.0).astype("float32")
                * np.ones((2, 32, 32, 3), "float32"),
            ),
            "x.npy: 192 pixel values are not finite",
        ),
        (
            lambda d: np.save(d / "x.npy", np.pad(np.array([[[np.inf]]]), ((0, 31), (0, 31), (0, 2)))),
            "x.npy: 1 pixel value is not finite",
        ),
    ],
)
def test_client_refuses_inputs_that_do_not_fit(exported, tmp_path, make_input, message):
    path, *_ = exported
    make_input(tmp_path)
    bad = next(iter(tmp_path.iterdir()), tmp_path / "missing.jpg")
    with pytest.raises(serving.ConfigError, match=message):
        serving.Classifier(path).classify([str(bad)])


@pytest.mark.slow
def test_client_command_line_gives_one_line_and_no_traceback(command_runs):
    result, _ = command_runs["gray"]
    assert result.returncode == 1
    assert re.search(
        r"error: .*gray.npy: shape \[28, 28, 1\] does not fit the model's input \[32, 32, 3\]", result.stderr
    )
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""  # every input is checked before any is classified


# The command line once (NaN); inf and -inf take the same path, checked in-process by the next test.
@pytest.mark.slow
def test_client_command_line_refuses_non_finite_pixels(command_runs):
    result, tmp_path = command_runs["non_finite"]
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {tmp_path / 'bad.npy'}: 1 pixel value is not finite (NaN or inf); "
        "the model takes float32 pixels in [0, 255]"
    ], result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout and "Warning" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_client_refuses_non_finite_pixels_with_the_message_the_command_prints(exported, tmp_path, bad):
    path, *_ = exported
    images = np.full((2, 32, 32, 3), 128.0, "float32")
    images[1, 5, 7, 2] = bad
    np.save(tmp_path / "bad.npy", images)
    with pytest.raises(serving.ConfigError) as error:
        serving.Classifier(path).classify([str(tmp_path / "bad.npy")])
    assert str(error.value) == (
        f"{tmp_path / 'bad.npy'}: 1 pixel value is not finite (NaN or inf); the model takes float32 pixels in [0, 255]"
    )


def test_client_refuses_a_folder_that_is_not_an_export(tmp_path):
    with pytest.raises(serving.ConfigError, match="is not a SavedModel folder"):
        serving.Classifier(str(tmp_path))
