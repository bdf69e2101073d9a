"""Soft-target and loss maths against values worked out by hand."""

import math

import numpy as np
import pytest
import tensorflow as tf

from introspective_tf import soft_targets


def test_cosine_similarity_to_true_class():
    # Three classes, 2-pixel explanations: E0 = (1, 0), E1 = (0, 1), E2 = (1, 1).
    explanations = tf.constant([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    assert np.allclose(
        soft_targets.cosine_similarity_to_true_class(explanations, tf.constant([0])), [[1.0, 0.0, 1 / math.sqrt(2)]]
    )
    assert np.allclose(
        soft_targets.cosine_similarity_to_true_class(explanations, tf.constant([2])),
        [[1 / math.sqrt(2), 1 / math.sqrt(2), 1.0]],
    )


def test_cosine_similarity_of_zero_explanation_is_zero_not_nan():
    explanations = tf.constant([[[0.0, 0.0], [1.0, 0.0]]])
    assert np.allclose(soft_targets.cosine_similarity_to_true_class(explanations, tf.constant([1])), [[0.0, 1.0]])


def test_softmax_target():
    # s = (1, 0, 0), tau = 1: q = (e, 1, 1) / (e + 2).
    q = soft_targets.softmax_target(tf.constant([[1.0, 0.0, 0.0]]), tau=1.0)
    e = math.e
    assert np.allclose(q, [[e / (e + 2), 1 / (e + 2), 1 / (e + 2)]])
    # tau = 0.5 doubles the logits: (e^2, 1, 1) / (e^2 + 2).
    q = soft_targets.softmax_target(tf.constant([[1.0, 0.0, 0.0]]), tau=0.5)
    assert np.allclose(q, [[e**2 / (e**2 + 2), 1 / (e**2 + 2), 1 / (e**2 + 2)]])


def test_smoothing_target():
    # y = 0, s = (1, 0.5, 0), tau = 0.5, eps = 0.2: the non-true classes get eps * softmax((1, 0)).
    q = soft_targets.smoothing_target(tf.constant([[1.0, 0.5, 0.0]]), tf.constant([0]), tau=0.5, epsilon=0.2)
    e = math.e
    assert np.allclose(q, [[0.8, 0.2 * e / (e + 1), 0.2 * 1 / (e + 1)]])
    assert np.allclose(tf.reduce_sum(q, -1), 1.0)


def test_soft_target_dispatch_and_unknown_kind():
    s, y = tf.constant([[1.0, 0.2]]), tf.constant([0])
    # softmax, tau = 1: q_0 = e / (e + e^0.2) = 1 / (1 + e^-0.8); tau = 0.5: 1 / (1 + e^-1.6).
    q0 = 1 / (1 + math.exp(-0.8))
    assert np.allclose(soft_targets.soft_target(s, y, "softmax", 1.0, 0.1), [[q0, 1 - q0]])
    q0 = 1 / (1 + math.exp(-1.6))
    assert np.allclose(soft_targets.soft_target(s, y, "softmax", 0.5, 0.1), [[q0, 1 - q0]])
    # smoothing, C = 2: 1 - eps on y, all of eps on the one other class, whatever tau.
    assert np.allclose(soft_targets.soft_target(s, y, "smoothing", 1.0, 0.1), [[0.9, 0.1]])
    assert np.allclose(soft_targets.soft_target(s, tf.constant([1]), "smoothing", 0.5, 0.3), [[0.3, 0.7]])
    with pytest.raises(ValueError, match="unknown soft target"):
        soft_targets.soft_target(s, y, "other", 1.0, 0.1)


# Three classes, 4-pixel explanations, y = 0: E0 = (2, 0, 0, 0), E1 = (0, 2, 0, 0), E2 = (3, 1, 1, 1) = E0 + 1.
#   cosine:  <E1, E0> = 0;  <E2, E0> / (|E2| |E0|) = 6 / (sqrt 12 * 2) = sqrt(3) / 2.
#   pearson: centred E0 = (1.5, -.5, -.5, -.5) = centred E2, |.| = sqrt 3; centred E1 . centred E0 = -1: -1/3.
#   neg_l2:  -|E1 - E0| / |E0| = -sqrt 8 / 2 = -sqrt 2;  -|E2 - E0| / |E0| = -|(1, 1, 1, 1)| / 2 = -1.
BY_HAND = {
    "cosine": [1.0, 0.0, math.sqrt(3) / 2],
    "pearson": [1.0, -1 / 3, 1.0],
    "neg_l2": [0.0, -math.sqrt(2), -1.0],
}
EXPLANATIONS = [[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [3.0, 1.0, 1.0, 1.0]]


@pytest.mark.parametrize("kind", sorted(BY_HAND))
def test_similarity_dispatch_by_hand(kind):
    explanations = tf.constant([EXPLANATIONS])
    assert np.allclose(soft_targets.similarity_to_true_class(explanations, tf.constant([0]), kind), [BY_HAND[kind]])
    # The same from the per-class moments <E_c, E_y> = (4, 0, 6), |E_c|^2 = (4, 4, 12), sum E_c = (2, 2, 6).
    moments = [tf.constant([m]) for m in ([4.0, 0.0, 6.0], [4.0, 4.0, 12.0], [2.0, 2.0, 6.0])]
    from_moments = soft_targets.similarity_from_moments(*moments, tf.constant([0]), size=4, kind=kind)
    assert np.allclose(from_moments, [BY_HAND[kind]], atol=1e-6)
    # As images [B, C, h, w]: explanations are compared flattened.
    as_maps = tf.reshape(explanations, [1, 3, 2, 2])
    assert np.allclose(soft_targets.similarity_to_true_class(as_maps, tf.constant([0]), kind), [BY_HAND[kind]])


def test_similarity_dispatch_unknown_kind():
    with pytest.raises(ValueError, match="unknown similarity"):
        soft_targets.similarity_to_true_class(tf.constant([EXPLANATIONS]), tf.constant([0]), "dot")


def test_distillation_loss_hand_computed():
    # z = (ln 2, 0, 0): softmax(z) = (1/2, 1/4, 1/4); y = 0 so CE = ln 2.
    logits, labels = tf.constant([[math.log(2.0), 0.0, 0.0]]), tf.constant([0])
    # T = 1 and q = softmax(z): the KL term vanishes, loss = (1 - alpha) ln 2.
    q = tf.constant([[0.5, 0.25, 0.25]])
    assert np.isclose(soft_targets.distillation_loss(labels, logits, q, alpha=0.5, temperature=1.0), 0.5 * math.log(2))
    # T = 2, q one-hot on y: softmax(z / 2) = (sqrt2, 1, 1) / (sqrt2 + 2), KL = ln(1 + sqrt2).
    q = tf.constant([[1.0, 0.0, 0.0]])
    expected = 0.5 * math.log(2) + 0.5 * 4 * math.log(1 + math.sqrt(2))
    assert np.isclose(soft_targets.distillation_loss(labels, logits, q, alpha=0.5, temperature=2.0), expected)
    # alpha = 0 is plain cross-entropy whatever the target.
    assert np.isclose(soft_targets.distillation_loss(labels, logits, q, alpha=0.0, temperature=2.0), math.log(2))


def test_distillation_loss_is_a_batch_mean():
    logits = tf.constant([[math.log(2.0), 0.0, 0.0], [0.0, 0.0, 0.0]])
    labels = tf.constant([0, 1])
    q = tf.constant([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    expected = (math.log(2) + math.log(3)) / 2  # alpha = 1, T = 1: KL to a one-hot is the CE
    assert np.isclose(soft_targets.distillation_loss(labels, logits, q, alpha=1.0, temperature=1.0), expected)


def test_target_gets_no_gradient():
    logits = tf.Variable([[0.3, -0.2, 0.1]])
    target = tf.Variable([[0.6, 0.3, 0.1]])
    with tf.GradientTape() as tape:
        loss = soft_targets.distillation_loss(tf.constant([0]), logits, target, alpha=0.5, temperature=2.0)
    grad_logits, grad_target = tape.gradient(loss, [logits, target])
    assert grad_target is None
    assert np.all(np.isfinite(grad_logits))
