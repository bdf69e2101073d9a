"""Confidence penalty (Pereyra et al. 2017): cross-entropy minus beta times the prediction's entropy.

Like label smoothing it discourages over-confident outputs, but by rewarding the student's own
entropy instead of by a fixed target; neither knows which classes are similar.
"""

from __future__ import annotations

import tensorflow as tf

from introspective_tf.methods.base import Method, NonNegative


def confidence_penalty_loss(labels: tf.Tensor, logits: tf.Tensor, penalty: float) -> tf.Tensor:
    """Batch mean of CE(y, p) - beta H(p), p = softmax(z)."""
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits)
    log_p = tf.nn.log_softmax(logits, axis=-1)
    entropy = -tf.reduce_sum(tf.exp(log_p) * log_p, axis=-1)
    return tf.reduce_mean(cross_entropy - penalty * entropy)


class ConfidencePenalty(Method):
    def __init__(self, backbone, penalty: NonNegative = 0.1, **kwargs):
        """Args:
        penalty: beta in the loss CE - beta H(p).
        """
        super().__init__(backbone, **kwargs)
        self.penalty = penalty

    def loss_from_logits(self, labels, logits, targets):
        return confidence_penalty_loss(labels, logits, self.penalty)
