"""The export in other tools' hands: Keras' TFSMLayer with its defaults, and ONNX through tf2onnx and onnxruntime.

Both are compared with the SavedModel's own `serving_default` probabilities on real test images, from a
ResNet-8 trained for a few steps (so BatchNorm's moving statistics are not the initial ones).
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import MINI

from introspective_tf import export, methods, models
from introspective_tf.training import data as data_lib

pytestmark = pytest.mark.slow  # a trained export, converted


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(export path, 20 real test images as float32 pixels, their serving_default probabilities)."""
    if not (MINI / "train").is_dir():
        pytest.skip("real data not found")
    keras.utils.set_random_seed(0)
    data = data_lib.load(f"folder:{MINI}", batch_size=20, augment=False)
    backbone = models.build("resnet8", data.image_shape, data.num_classes)
    method = methods.build("standard", backbone)
    method.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    method.fit(data.train, epochs=1, steps_per_epoch=3, shuffle=False, verbose=0)  # the data set shuffles
    path = export.export_classifier(backbone, str(tmp_path_factory.mktemp("formats") / "export"), data.class_names)
    images = next(iter(data.eval))[0].numpy()
    served = (
        tf.saved_model.load(path).signatures[export.SIGNATURE](images=tf.constant(images))[export.OUTPUT_NAME].numpy()
    )
    assert 0.05 < served.max(axis=1).min() and served.max(axis=1).max() < 0.999  # not saturated: differences show
    return path, images, served


def test_signatures_are_kept_and_serve_is_added(exported):
    path, *_ = exported
    signatures = tf.saved_model.load(path).signatures
    assert set(signatures) == {"serving_default", "serve"}
    default = signatures["serving_default"]
    assert list(default.structured_input_signature[1]) == ["images"]
    assert list(default.structured_outputs) == ["probabilities"]


def test_tfsmlayer_with_its_defaults_gives_the_served_probabilities(exported):
    path, images, served = exported
    layer = keras.layers.TFSMLayer(path)  # call_endpoint="serve"
    np.testing.assert_allclose(np.asarray(layer(images)), served, rtol=0, atol=1e-6)
    # As a layer of a Keras model: predict() batches the images itself.
    model = keras.Sequential([keras.Input(images.shape[1:]), layer])
    np.testing.assert_allclose(model.predict(images, batch_size=8, verbose=0), served, rtol=0, atol=1e-6)


def test_onnx_conversion_gives_the_served_probabilities(exported, tmp_path):
    import onnxruntime

    path, images, served = exported
    onnx_path = tmp_path / "model.onnx"
    # The command docs/using_models.md gives.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tf2onnx.convert",
            "--saved-model",
            path,
            "--signature_def",
            "serving_default",
            "--output",
            str(onnx_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    (probabilities,) = session.run(["probabilities"], {"images": images})
    assert probabilities.shape == served.shape
    np.testing.assert_allclose(probabilities, served, rtol=0, atol=1e-6)
