"""Standard training: cross-entropy with the one-hot label. The baseline every method is compared with."""

import tensorflow as tf

from introspective_tf.methods.base import Method


class Standard(Method):
    def loss_from_logits(self, labels, logits, targets):
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits))
