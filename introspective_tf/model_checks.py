"""A trained model brought into a run (a teacher to distil from, a model to fine-tune) must fit the data.

Keras would otherwise fail deep inside the first traced step with a shape error and a long traceback;
these checks say in one line which model, which mismatch, and what the data needs.
"""

from __future__ import annotations

import os

import keras

from introspective_tf.errors import ConfigError


def check_compatible(model: keras.Model, image_shape, num_classes: int, what: str = "teacher") -> None:
    """Raises `ConfigError` unless `model` takes `image_shape` images and returns `num_classes` logits."""
    model_input = tuple(model.input_shape[1:])
    if model_input != tuple(image_shape):
        raise ConfigError(f"the {what} takes images of shape {model_input}, but the data has {tuple(image_shape)}")
    model_classes = model.output_shape[-1]
    if model_classes != num_classes:
        raise ConfigError(f"the {what} predicts {model_classes} classes, but the data has {num_classes}")


def load_compatible(path: str, image_shape, num_classes: int, what: str = "teacher") -> keras.Model:
    """Loads a `.keras` model from `path` and checks it with `check_compatible`."""
    if not os.path.isfile(path):
        raise ConfigError(f"the {what} model '{path}' does not exist")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises ValueError, OSError, zipfile errors... for unreadable files
        raise ConfigError(
            f"cannot load the {what} model '{path}' ({type(err).__name__}): is it a .keras file?"
        ) from None
    check_compatible(model, image_shape, num_classes, what)
    return model
