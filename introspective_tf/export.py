"""Export the plain classifier as a TF SavedModel for serving.

The signature `serving_default` takes `images`: float32 [batch, H, W, C] in pixel units [0, 255] (the
model normalises inside) and returns `probabilities` [batch, classes]. It works with
`saved_model_cli run`, TF Serving, `tf.saved_model.load(path).signatures["serving_default"]` and
tf2onnx. The endpoint `serve` (also a signature) computes the same probabilities but returns the tensor
itself, as Keras' own exports do, so `keras.layers.TFSMLayer(path)` works with its defaults.
The export is written to a temporary folder next to the destination and renamed into place, so a
crash never leaves a half-written model where a server may load it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

SIGNATURE = "serving_default"
KERAS_ENDPOINT = "serve"  # what keras.layers.TFSMLayer calls by default; returns the probabilities tensor
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
KERAS_MODEL = "model.keras"  # in assets.extra/: the backbone (logits) as a Keras file


def export_classifier(backbone: keras.Model, path: str, class_names: list[str] | None = None) -> str:
    """Writes `backbone` (logits) as a SavedModel serving probabilities; returns the final path."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    spec = tf.TensorSpec([None, *backbone.input_shape[1:]], tf.float32, name=INPUT_NAME)

    def probabilities(images):
        return tf.nn.softmax(tf.cast(backbone(images, training=False), tf.float32), axis=-1)

    archive = keras.export.ExportArchive()
    archive.track(backbone)
    archive.add_endpoint(SIGNATURE, lambda images: {OUTPUT_NAME: probabilities(images)}, input_signature=[spec])
    archive.add_endpoint(KERAS_ENDPOINT, probabilities, input_signature=[spec])
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        archive.write_out(staging, verbose=False)
        # The Keras model rides along so tools that need its layers (Grad-CAM in explain.py) work from
        # the export alone; serving ignores assets.extra/.
        os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
        backbone.save(os.path.join(staging, "assets.extra", KERAS_MODEL))
        if class_names:
            with open(os.path.join(staging, "assets.extra", "class_names.json"), "w") as f:
                json.dump({"class_names": list(class_names)}, f)
        if os.path.exists(path):
            previous = path + ".previous"
            shutil.rmtree(previous, ignore_errors=True)
            os.rename(path, previous)
            os.rename(staging, path)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.rename(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def load_class_names(path: str) -> list[str] | None:
    """The class names written beside an export, if any."""
    try:
        with open(os.path.join(path, "assets.extra", "class_names.json")) as f:
            return json.load(f)["class_names"]
    except (OSError, KeyError, ValueError):
        return None
