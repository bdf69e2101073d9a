"""From self-explanations to a soft target, and the distillation loss that learns from it.

    s_c = sim(E_c, E_y)                       class similarity to the true class (`SIMILARITIES`):
          cosine   <E_c, E_y> / (|E_c| |E_y|)                 s_y = 1
          pearson  cosine of the mean-centred explanations    s_y = 1
          neg_l2   -|E_c - E_y| / |E_y|                       s_y = 0 (scale-free, so tau keeps its meaning)
    q   = softmax(s / tau)                      "softmax" target
    q   = (1 - eps) onehot(y) + eps * r         "smoothing" target, r = softmax(s / tau) over c != y
    L   = (1 - alpha) CE(y, softmax(z)) + alpha T^2 KL(q || softmax(z / T))

All functions are pure TensorFlow on batched tensors; none looks at Python values per step.
"""

from __future__ import annotations

import tensorflow as tf

SOFT_TARGETS = ("softmax", "smoothing")
SIMILARITIES = ("cosine", "pearson", "neg_l2")
_TINY = 1e-12


def cosine_similarity_to_true_class(explanations: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """explanations [B, C, ...], labels [B] -> cos(E_c, E_y) of shape [B, C]."""
    flat = tf.reshape(explanations, [tf.shape(explanations)[0], explanations.shape[1], -1])
    true = tf.gather(flat, tf.cast(labels, tf.int32), axis=1, batch_dims=1)  # [B, D]
    dots = tf.einsum("bcd,bd->bc", flat, true)
    norms = tf.norm(flat, axis=-1) * tf.norm(true, axis=-1, keepdims=True)
    return dots / tf.maximum(norms, _TINY)


def _flat_with_true(explanations: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    flat = tf.reshape(explanations, [tf.shape(explanations)[0], explanations.shape[1], -1])
    return flat, tf.gather(flat, tf.cast(labels, tf.int32), axis=1, batch_dims=1)


def pearson_similarity_to_true_class(explanations: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Cosine of explanations centred on their own mean: insensitive to a constant offset."""
    flat = tf.reshape(explanations, [tf.shape(explanations)[0], explanations.shape[1], -1])
    return cosine_similarity_to_true_class(flat - tf.reduce_mean(flat, axis=-1, keepdims=True), labels)


def neg_l2_similarity_to_true_class(explanations: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """-|E_c - E_y| / |E_y|: a distance relative to the true explanation's size, 0 for c = y."""
    flat, true = _flat_with_true(explanations, labels)
    distance = tf.norm(flat - true[:, tf.newaxis], axis=-1)
    return -distance / tf.maximum(tf.norm(true, axis=-1, keepdims=True), _TINY)


def similarity_to_true_class(explanations: tf.Tensor, labels: tf.Tensor, kind: str = "cosine") -> tf.Tensor:
    """explanations [B, C, ...], labels [B] -> s [B, C] by `kind`, one of `SIMILARITIES`."""
    if kind == "cosine":
        return cosine_similarity_to_true_class(explanations, labels)
    if kind == "pearson":
        return pearson_similarity_to_true_class(explanations, labels)
    if kind == "neg_l2":
        return neg_l2_similarity_to_true_class(explanations, labels)
    raise ValueError(f"unknown similarity '{kind}': use one of {SIMILARITIES}")


def similarity_from_moments(
    dots: tf.Tensor, squared_norms: tf.Tensor, sums: tf.Tensor, labels: tf.Tensor, size: int, kind: str = "cosine"
) -> tf.Tensor:
    """The same similarities from per-class moments, [B, C] each: <E_c, E_y>, |E_c|^2, sum(E_c).

    For estimators that never form E_c (see `jvp_similarity.py`); `size` is the number of entries
    of one explanation. The true class's own value is set exactly (1 for cosine and pearson, 0 for
    neg_l2), and cosines are clipped to [-1, 1], since estimated norms can be off either way.
    """
    true = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(dots)[-1], dtype=dots.dtype) > 0
    true_of = lambda t: tf.reduce_sum(tf.where(true, t, tf.zeros_like(t)), axis=-1, keepdims=True)  # noqa: E731
    squared_norms = tf.maximum(squared_norms, 0.0)
    if kind in ("cosine", "pearson"):
        if kind == "pearson":
            dots = dots - sums * true_of(sums) / size
            squared_norms = tf.maximum(squared_norms - tf.square(sums) / size, 0.0)
        norms = tf.sqrt(squared_norms * true_of(squared_norms))
        cosine = tf.clip_by_value(dots / tf.maximum(norms, _TINY), -1.0, 1.0)
        return tf.where(true, tf.ones_like(cosine), cosine)
    if kind == "neg_l2":
        true_squared = true_of(squared_norms)
        distance = tf.sqrt(tf.maximum(squared_norms - 2.0 * dots + true_squared, 0.0))
        return tf.where(true, tf.zeros_like(distance), -distance / tf.maximum(tf.sqrt(true_squared), _TINY))
    raise ValueError(f"unknown similarity '{kind}': use one of {SIMILARITIES}")


def softmax_target(similarity: tf.Tensor, tau: float) -> tf.Tensor:
    """q = softmax(s / tau): tau -> 0 gives the one-hot label, large tau the uniform distribution."""
    return tf.nn.softmax(similarity / tau, axis=-1)


def smoothing_target(similarity: tf.Tensor, labels: tf.Tensor, tau: float, epsilon: float) -> tf.Tensor:
    """Label smoothing whose eps is spread over the wrong classes by their similarity to the true one."""
    true = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(similarity)[-1], dtype=similarity.dtype)
    masked = tf.where(true > 0, tf.constant(-float("inf"), similarity.dtype), similarity / tau)
    return (1.0 - epsilon) * true + epsilon * tf.nn.softmax(masked, axis=-1)


def soft_target(similarity: tf.Tensor, labels: tf.Tensor, kind: str, tau: float, epsilon: float) -> tf.Tensor:
    if kind == "softmax":
        return softmax_target(similarity, tau)
    if kind == "smoothing":
        return smoothing_target(similarity, labels, tau, epsilon)
    raise ValueError(f"unknown soft target '{kind}': use one of {SOFT_TARGETS}")


def kl_divergence_with_temperature(target: tf.Tensor, logits: tf.Tensor, temperature: float) -> tf.Tensor:
    """Per-example KL(target || softmax(logits / T)), [B]; zero entries of the target count as 0 log 0 = 0."""
    log_student = tf.nn.log_softmax(logits / temperature, axis=-1)
    return tf.reduce_sum(tf.math.xlogy(target, target) - target * log_student, axis=-1)


def distillation_loss(
    labels: tf.Tensor, logits: tf.Tensor, target: tf.Tensor, alpha: float, temperature: float
) -> tf.Tensor:
    """Batch mean of (1 - alpha) CE(y, softmax(z)) + alpha T^2 KL(q || softmax(z / T)).

    The T^2 factor keeps the soft term's gradient on the same scale as the hard term's for any T
    (Hinton et al. 2015). The target is treated as a constant.
    """
    target = tf.stop_gradient(tf.cast(target, logits.dtype))
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits)
    kl = kl_divergence_with_temperature(target, logits, temperature)
    return tf.reduce_mean((1.0 - alpha) * cross_entropy + alpha * temperature**2 * kl)
