"""Self-explanations: the input gradient of every class logit, for every example of a batch.

**Why inference mode.** In training mode BatchNorm normalises with the statistics of the batch, so
logit z_c of example i depends on every other example j, and the batch gradient d(sum_i z_ic)/dx_j
mixes in cross-example terms: it is not the per-example saliency dz_jc/dx_j. In inference mode each
example is processed on its own (moving statistics), so the summed gradient is exactly the
per-example one, the same explanation the exported model gives at test time. `training=True` is kept
as an option for experiments; tests check that inference-mode explanations of one example do not
depend on the rest of the batch.

Two equivalent graph implementations are offered: `"loop"` (one forward pass, then one backward pass
per class, unrolled in the graph from a persistent tape) and `"batch_jacobian"` (`tf.vectorized_map`
over classes). The loop was the faster on a 2-core CPU (see `python -m introspective_tf.benchmark`).
"""

from __future__ import annotations

import keras
import tensorflow as tf

IMPLEMENTATIONS = ("loop", "batch_jacobian")


def _as_float(images) -> tf.Tensor:
    images = tf.convert_to_tensor(images)
    return images if images.dtype.is_floating else tf.cast(images, tf.float32)


def all_class_input_gradients(
    model: keras.Model, images: tf.Tensor, *, training: bool = False, implementation: str = "loop"
) -> tf.Tensor:
    """Returns dz_c/dx for all classes c: shape [batch, classes, *image_shape], in the images' dtype.

    The number of classes is read from the model's static output shape, so the loop is unrolled once
    at trace time and costs no Python work per step.
    """
    images = _as_float(images)
    if implementation == "loop":
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(images)
            logits = tf.cast(model(images, training=training), tf.float32)  # mixed precision: float32 logits
            per_class = [logits[:, c] for c in range(logits.shape[-1])]
        gradients = [tape.gradient(z_c, images) for z_c in per_class]
        del tape
        return tf.stack(gradients, axis=1)
    if implementation == "batch_jacobian":
        with tf.GradientTape() as tape:
            tape.watch(images)
            logits = tf.cast(model(images, training=training), tf.float32)
        return tape.batch_jacobian(logits, images)
    raise ValueError(f"unknown explanation implementation '{implementation}': use one of {IMPLEMENTATIONS}")


def per_class_input_gradients_reference(model: keras.Model, images: tf.Tensor, *, training: bool = False) -> tf.Tensor:
    """The plain definition, for tests: a fresh forward pass and tape per class and per example."""
    images = _as_float(images)
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
