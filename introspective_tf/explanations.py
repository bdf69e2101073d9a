"""Self-explanations: the input gradient of every class logit, for every example of a batch.

**Why inference mode.** In training mode BatchNorm normalises with the statistics of the batch, so
logit z_c of example i depends on every other example j, and the batch gradient d(sum_i z_ic)/dx_j
mixes in cross-example terms: it is not the per-example saliency dz_jc/dx_j. In inference mode each
example is processed on its own (moving statistics), so the summed gradient is exactly the
per-example one, the same explanation the exported model gives at test time. `training=True` is kept
as an option for experiments; tests check that inference-mode explanations of one example do not
depend on the rest of the batch.

Three equivalent graph implementations of the exact all-class gradient are offered: `"loop"` (one
forward pass, then one backward pass per class, unrolled in the graph from a persistent tape),
`"batch_jacobian"` and `"pfor"` (`tape.jacobian` of the batch-summed logits with
`experimental_use_pfor=True`); both of the latter vectorise the backward pass over classes. Which is
fastest was measured on a 2-core CPU (`python -m introspective_tf.benchmark`, docs/fast_introspection.md).

Explanation kinds (`EXPLANATIONS`):

* `gradient`          E_c = dz_c/dx                      (the paper's self-explanation)
* `gradient_x_input`  E_c = x * dz_c/dx                  (x in the model's input units, pixels [0, 255])
* `gradcam`           E_c = relu(sum_k a_ck A_k), a_ck = mean_hw dz_c/dA_k, at a layer's output A
                      (Selvaraju et al. 2017; the same maps as tf-keras-vis' `Gradcam` without resizing
                      or normalisation). Backward passes stop at A, so at the last block it is cheap.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from introspective_tf.errors import ConfigError

IMPLEMENTATIONS = ("loop", "batch_jacobian", "pfor")
EXPLANATIONS = ("gradient", "gradient_x_input", "gradcam")


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
    if implementation == "pfor":
        # Gradients of the batch-summed logits: per example exactly when examples are independent
        # (inference mode), the same summed gradient as the loop otherwise.
        with tf.GradientTape() as tape:
            tape.watch(images)
            summed = tf.reduce_sum(model(images, training=training), axis=0)  # [C]
        jacobian = tape.jacobian(summed, images, experimental_use_pfor=True)  # [C, B, ...]
        return tf.transpose(jacobian, [1, 0, *range(2, jacobian.shape.rank)])
    raise ValueError(f"unknown explanation implementation '{implementation}': use one of {IMPLEMENTATIONS}")


def with_layer_output(model: keras.Model, layer_name: str) -> keras.Model:
    """A model sharing `model`'s weights that returns (output of `layer_name`, logits), for Grad-CAM."""
    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        raise ConfigError(f"model '{model.name}' has no layer '{layer_name}' to explain at") from None
    if len(layer.output.shape) != 4:
        raise ConfigError(f"layer '{layer_name}' gives shape {tuple(layer.output.shape)}; Grad-CAM needs a [batch, h, w, channels] feature map")
    return keras.Model(model.inputs, [layer.output, model.outputs[0]], name=f"{model.name}_with_{layer_name}")


def all_class_gradcam(layer_and_logits: keras.Model, images: tf.Tensor, *, training: bool = False) -> tf.Tensor:
    """Grad-CAM maps of all classes, [batch, classes, h, w], from a `with_layer_output` model.

    dz_c/dA is vectorised over classes with `batch_jacobian`; only the part of the network above A
    is differentiated, which at the last block is the pooling and the dense layer.
    """
    images = _as_float(images)
    with tf.GradientTape() as tape:
        features, logits = layer_and_logits(images, training=training)
    jacobian = tape.batch_jacobian(logits, features)  # [B, C, h, w, k]
    weights = tf.reduce_mean(jacobian, axis=[2, 3])  # [B, C, k]
    return tf.nn.relu(tf.einsum("bhwk,bck->bchw", features, weights))


def all_class_explanations(
    model: keras.Model, images: tf.Tensor, *, explanation: str = "gradient", training: bool = False,
    implementation: str = "loop", layer_and_logits: keras.Model | None = None,
) -> tf.Tensor:
    """E_c for every class: [batch, classes, ...]. Grad-CAM needs `layer_and_logits` (`with_layer_output`)."""
    images = _as_float(images)
    if explanation == "gradient":
        return all_class_input_gradients(model, images, training=training, implementation=implementation)
    if explanation == "gradient_x_input":
        gradients = all_class_input_gradients(model, images, training=training, implementation=implementation)
        return images[:, tf.newaxis] * gradients
    if explanation == "gradcam":
        if layer_and_logits is None:
            layer_and_logits = with_layer_output(model, "last_conv_block")
        return all_class_gradcam(layer_and_logits, images, training=training)
    raise ValueError(f"unknown explanation '{explanation}': use one of {EXPLANATIONS}")


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
