"""A frozen teacher for knowledge distillation, loaded from a file this project wrote.

Two formats: `model.keras` from a run folder (outputs logits) or a SavedModel export (signature
`serving_default`: `images` -> `probabilities`). For a SavedModel the teacher's logits are its
log-probabilities: they differ from the logits by a per-example constant, so softmax(log p / T) is
exactly the tempered distribution. The teacher always runs in inference mode and is never trained.
"""

from __future__ import annotations

import os
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from introspective_tf import export
from introspective_tf.errors import ConfigError, option

_TINY = float(np.finfo(np.float32).tiny)


class Teacher:
    """images [B, H, W, C] in [0, 255] -> logits [B, classes]. A plain object, so the student's
    `keras.Model` does not track (save, count or train) the teacher's weights."""

    def __init__(self, logits_fn: Callable[[tf.Tensor], tf.Tensor], input_shape: tuple, num_classes: int, source=None):
        self._logits_fn = logits_fn
        self.source = source  # the loaded model; holding it keeps a SavedModel's variables alive
        self.input_shape = tuple(input_shape)
        self.num_classes = int(num_classes)

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        return tf.stop_gradient(self._logits_fn(images))


def _from_keras(path: str) -> Teacher:
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises many error types for a bad archive
        raise ConfigError(f"cannot load teacher '{path}' as a .keras model: {err}") from None
    model.trainable = False
    return Teacher(lambda images: model(images, training=False), model.input_shape[1:], model.output_shape[-1], model)


def _from_saved_model(path: str) -> Teacher:
    try:
        loaded = tf.saved_model.load(path)
        serve = loaded.signatures[export.SIGNATURE]
        input_spec = serve.structured_input_signature[1][export.INPUT_NAME]
        output_spec = serve.structured_outputs[export.OUTPUT_NAME]
    except Exception as err:
        raise ConfigError(
            f"teacher '{path}' is not a SavedModel exported by this project "
            f"({export.SIGNATURE}: {export.INPUT_NAME} -> {export.OUTPUT_NAME}): {type(err).__name__}"
        ) from None

    def logits(images):
        probabilities = serve(**{export.INPUT_NAME: tf.cast(images, tf.float32)})[export.OUTPUT_NAME]
        return tf.math.log(tf.maximum(probabilities, _TINY))

    return Teacher(logits, input_spec.shape[1:], output_spec.shape[-1], loaded)


def load(path: str, input_shape: tuple, num_classes: int) -> Teacher:
    """Loads the teacher at `path` and checks it fits the student's data; a ConfigError if not."""
    if not path:
        raise ConfigError(
            f"kd needs a teacher: {option('teacher', 'PATH')} (a run's model.keras or a SavedModel export)"
        )
    if path.endswith(".keras") and os.path.isfile(path):
        teacher = _from_keras(path)
    elif os.path.isfile(os.path.join(path, "saved_model.pb")):
        teacher = _from_saved_model(path)
    else:
        raise ConfigError(f"teacher '{path}' is neither a .keras file nor a SavedModel folder")
    check_fits(f"teacher '{path}'", teacher.input_shape, teacher.num_classes, input_shape, num_classes)
    return teacher


def check_fits(what: str, model_input_shape, model_classes: int, image_shape, num_classes: int) -> None:
    """A trained model brought into a run (a teacher, a model to analyse) must fit the data: one line
    that says which mismatch, instead of a shape error deep inside the first traced step."""
    if int(model_classes) != int(num_classes):
        raise ConfigError(f"{what} has {model_classes} classes, the data has {num_classes}")
    if list(model_input_shape) != list(image_shape):
        raise ConfigError(f"{what} takes images of shape {tuple(model_input_shape)}, the data has {tuple(image_shape)}")
