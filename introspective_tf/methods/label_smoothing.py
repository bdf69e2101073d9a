"""Label smoothing (Szegedy et al. 2016): learn from (1 - eps) onehot(y) + eps / C, a fixed soft target.

The soft target spreads its mass uniformly, so it carries no class similarity -- the baseline that
separates "any soft target" from a soft target that knows which classes look alike.
"""

from __future__ import annotations

import tensorflow as tf

from introspective_tf.methods.base import Method, UnitInterval


def label_smoothing_loss(labels: tf.Tensor, logits: tf.Tensor, smoothing: float) -> tf.Tensor:
    """Batch mean of CE((1 - eps) onehot(y) + eps / C, softmax(z))."""
    num_classes = tf.shape(logits)[-1]
    target = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=logits.dtype)
    target = (1.0 - smoothing) * target + smoothing / tf.cast(num_classes, logits.dtype)
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(target, logits))


class LabelSmoothing(Method):
    def __init__(self, backbone, smoothing: UnitInterval = 0.1, **kwargs):
        """Args:
        smoothing: eps in the target (1 - eps) onehot(y) + eps / C.
        """
        super().__init__(backbone, **kwargs)
        self.smoothing = smoothing

    def loss_from_logits(self, labels, logits, targets):
        return label_smoothing_loss(labels, logits, self.smoothing)
