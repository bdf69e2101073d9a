"""Plain, slow definitions that the fast implementations are tested against (used by tests only)."""

import keras
import numpy as np
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


def per_class_gradcam_reference(
    model: keras.Model, images, *, layer: str = "last_conv_block", training: bool = False
) -> tf.Tensor:
    """Grad-CAM by its definition, for tests: relu(sum_k a_ck A_k) with a_ck = mean_hw dz_c/dA_hwk, one
    tape.gradient per class w.r.t. the layer's output A in one forward pass; [B, C, h, w]."""
    with_features = keras.Model(model.inputs, [model.get_layer(layer).output, model.outputs[0]])
    images = tf.cast(tf.convert_to_tensor(images), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        features, logits = with_features(images, training=training)
        per_class = [logits[:, c] for c in range(logits.shape[-1])]
    maps = []
    for z_c in per_class:
        weights = tf.reduce_mean(tape.gradient(z_c, features), axis=[1, 2])  # [B, k]
        maps.append(tf.nn.relu(tf.einsum("bhwk,bk->bhw", features, weights)))
    return tf.stack(maps, axis=1)


# numpy, float64, from the formulas (README, "The method in one screen"); no package code.


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def similarity_to_true_class(explanations, labels, kind: str = "cosine") -> np.ndarray:
    """s_c per example, [B, C], one pair of flattened maps at a time: cosine <E_c, E_y> / (|E_c| |E_y|)
    (0 when a map is all zero), pearson (the cosine of the maps minus their own means) or neg_l2
    (-|E_c - E_y| / |E_y|)."""
    explanations = np.asarray(explanations, np.float64)
    batch, classes = explanations.shape[:2]
    s = np.zeros((batch, classes))
    for b in range(batch):
        true = explanations[b, labels[b]].ravel()
        for c in range(classes):
            e = explanations[b, c].ravel()
            if kind == "neg_l2":
                s[b, c] = -np.sqrt(np.sum((e - true) ** 2)) / np.sqrt(np.sum(true**2))
                continue
            u, v = (e - e.mean(), true - true.mean()) if kind == "pearson" else (e, true)
            norms = np.sqrt(np.sum(u**2)) * np.sqrt(np.sum(v**2))
            s[b, c] = np.sum(u * v) / norms if norms > 0 else 0.0
    return s


def soft_target(s, labels, kind: str, tau: float, epsilon: float = 0.0) -> np.ndarray:
    """softmax: q = softmax(s / tau); smoothing: 1 - eps on y and eps spread over c != y by softmax(s_c / tau)."""
    s = np.asarray(s, np.float64)
    if kind == "softmax":
        return softmax(s / tau)
    q = np.zeros_like(s)
    for b, y in enumerate(labels):
        others = [c for c in range(s.shape[1]) if c != y]
        q[b, y] = 1.0 - epsilon
        q[b, others] = epsilon * softmax(s[b, others] / tau)
    return q


def true_mass_target(s, labels, mass: float, per_example: bool) -> np.ndarray:
    """softmax(s / tau) with tau such that the batch's mean q_y (per_example: every q_y) is `mass`: bisection
    on beta = 1 / tau, where the true-class mass rises with beta."""
    s, rows = np.asarray(s, np.float64), np.arange(len(labels))

    def q_at(beta):
        return softmax(s * (beta[:, None] if per_example else beta[0]))

    n = len(labels) if per_example else 1
    low, high = np.zeros(n), np.full(n, 1e4)
    for _ in range(200):
        middle = (low + high) / 2
        true = q_at(middle)[rows, labels]
        rising = (true if per_example else np.array([true.mean()])) < mass
        low, high = np.where(rising, middle, low), np.where(rising, high, middle)
    return q_at((low + high) / 2)
