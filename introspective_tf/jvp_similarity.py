"""All-class explanation similarities without forming the C explanations: forward-mode estimates.

The exact route needs one backward pass per class. Here, for input-gradient explanations
E_c = d * J_c (J_c = dz_c/dx, d = 1 for `gradient`, d = x for `gradient_x_input`), every similarity
in `soft_targets.SIMILARITIES` is a function of three per-class moments, and each moment is a
Jacobian-vector product J u, which gives *all* classes at once:

    <E_c, E_y> = (J (d * E_y))_c                  exact: one JVP in the direction d * E_y
    sum(E_c)   = (J d)_c                          exact: one JVP (pearson only)
    |E_c|^2    = E_v[(J (d * v))_c^2]             Hutchinson: v Rademacher, mean over `num_probes`

E_y itself is one backward pass of sum_i z_{i, y_i}. In inference mode examples are independent, so
the JVPs of all directions run as one batched forward-mode pass over the batch tiled 1 + k times
(2 + k for pearson).
The cost does not grow with C; the norms' relative error shrinks as 1/sqrt(k).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from introspective_tf import explanations, soft_targets


def estimable() -> tuple[str, ...]:
    """The explanation kinds linear in the input gradient (`Explainer.input_weight`), which this estimates."""
    return tuple(name for name, kind in explanations.EXPLAINERS.items() if kind.input_weight is not None)


def _true_class_gradient(model: keras.Model, images: tf.Tensor, labels: tf.Tensor, training: bool) -> tf.Tensor:
    with tf.GradientTape() as tape:
        tape.watch(images)
        logits = model(images, training=training)
        true_logits = tf.reduce_sum(tf.gather(logits, tf.cast(labels, tf.int32), axis=1, batch_dims=1))
    return tape.gradient(true_logits, images)


def estimate_moments(
    model: keras.Model,
    images: tf.Tensor,
    labels: tf.Tensor,
    *,
    explanation: str = "gradient",
    num_probes: int = 4,
    with_sums: bool = False,
    seed=None,
    training: bool = False,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(<E_c, E_y>, |E_c|^2, sum(E_c)), each [B, C]: exact, Hutchinson (exact for c = y), exact or 0.

    `seed` is a `keras.random.SeedGenerator` (a fresh draw every step) or an int.
    """
    if explanation not in estimable():
        raise ValueError(f"the JVP estimator explains with one of {estimable()}, not '{explanation}'")
    images = tf.convert_to_tensor(images)
    images = images if images.dtype.is_floating else tf.cast(images, tf.float32)
    scale = explanations.EXPLAINERS[explanation].input_weight(images)  # d
    true_explanation = scale * _true_class_gradient(model, images, labels, training)  # E_y

    batch = tf.shape(images)[0]
    probes = keras.random.randint(tf.concat([[num_probes], tf.shape(images)], 0), 0, 2, seed=seed)
    probes = tf.cast(2 * probes - 1, images.dtype)  # [k, B, ...]: an independent +-1 probe per example
    exact = [scale * true_explanation] + ([scale] if with_sums else [])
    directions = tf.concat([tf.stack(exact), scale * probes], axis=0)  # [n, B, ...]
    num_directions = len(exact) + num_probes
    merge = lambda t: tf.reshape(t, tf.concat([[-1], tf.shape(t)[2:]], 0))  # noqa: E731  [n, B, ...] -> [n B, ...]
    tiled = merge(tf.tile(images[tf.newaxis], [num_directions] + [1] * images.shape.rank))
    with tf.autodiff.ForwardAccumulator(primals=tiled, tangents=merge(directions)) as accumulator:
        logits = model(tiled, training=training)
    jvps = tf.reshape(accumulator.jvp(logits), [num_directions, batch, -1])  # [n, B, C]
    dots = jvps[0]
    sums = jvps[1] if with_sums else tf.zeros_like(dots)
    squared_norms = tf.reduce_mean(tf.square(jvps[len(exact) :]), axis=0)
    # The true class's norm is known exactly: use it (its Hutchinson estimate would only add noise).
    true = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(dots)[-1], dtype=dots.dtype) > 0
    exact_true_squared = tf.reduce_sum(tf.square(tf.reshape(true_explanation, [batch, -1])), axis=-1, keepdims=True)
    squared_norms = tf.where(true, tf.broadcast_to(exact_true_squared, tf.shape(dots)), squared_norms)
    return dots, squared_norms, sums


def estimate_similarity(
    model: keras.Model,
    images: tf.Tensor,
    labels: tf.Tensor,
    *,
    explanation: str = "gradient",
    similarity: str = "cosine",
    num_probes: int = 4,
    seed=None,
    training: bool = False,
) -> tf.Tensor:
    """s [B, C] of every class's explanation to the true class's (`soft_targets.SIMILARITIES`)."""
    dots, squared_norms, sums = estimate_moments(
        model,
        images,
        labels,
        explanation=explanation,
        num_probes=num_probes,
        with_sums=similarity == "pearson",
        seed=seed,
        training=training,
    )
    size = 1
    for dim in images.shape[1:]:
        size *= int(dim)
    return soft_targets.similarity_from_moments(dots, squared_norms, sums, labels, size, similarity)
