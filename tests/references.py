"""Plain, slow definitions that the fast implementations are tested against (used by tests only)."""

import keras
import tensorflow as tf


def per_class_input_gradients_reference(model: keras.Model, images: tf.Tensor, *, training: bool = False) -> tf.Tensor:
    """The plain definition, for tests: a fresh forward pass and tape per class and per example."""
    images = tf.convert_to_tensor(images)
    images = images if images.dtype.is_floating else tf.cast(images, tf.float32)
    rows = []
    for i in range(images.shape[0]):
        example = images[i : i + 1]
        per_class = []
        for c in range(model.output_shape[-1]):
            with tf.GradientTape() as tape:
                tape.watch(example)
                logit = model(example, training=training)[0, c]
            per_class.append(tape.gradient(logit, example)[0])
        rows.append(tf.stack(per_class))
    return tf.stack(rows)
