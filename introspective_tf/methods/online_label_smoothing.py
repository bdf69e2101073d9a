"""Online label smoothing, OLS (Zhang et al., "Delving Deep into Label Smoothing", IEEE TIP 2021): each
class's soft label is the mean prediction of the previous epoch's correctly classified training
examples of that class.

    S^t_c = mean of softmax(z_i) over the examples i of class c that epoch t classified correctly
    L     = (1 - alpha) CE(y, softmax(z)) + alpha CE(S^{t-1}_y, softmax(z))

As in the authors' CIFAR code (zhangchbin/OnlineLabelSmoothing, `cifar/scripts/train_cifar_all_methods.py`,
`--method=ols`): the predictions are those of the training pass (augmented, training mode, before the
step's update); "correct" is the arg-max on the label; a class with no correctly classified example in
an epoch gets the uniform soft label 1/C; S^0, used in the first epoch, is all zeros, so the first
epoch's loss is (1 - alpha) CE(y) alone; alpha is 0.5 there.

The [C, C] matrix S^{t-1} and the epoch's running sums (per class, the summed predictions and the count
of correct examples) are weights of this model, so a backup holds them. They are swapped at the first
step of each epoch, known from the optimizer's step count (`Method.epoch`): the step whose epoch is
past the one being accumulated turns the sums into S and starts new ones. No callback is needed, and a
resumed run swaps at its first step. Under several replicas every replica adds the all-gathered
predictions of the global batch, so the copies stay identical.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from introspective_tf.methods.base import Method, UnitInterval


def class_soft_labels(sums: tf.Tensor, counts: tf.Tensor) -> tf.Tensor:
    """S [C, C]: row c is sums[c] / counts[c], the mean prediction of class c's correct examples, or
    uniform (1/C each) for a class with none."""
    num_classes = tf.shape(sums)[-1]
    uniform = tf.fill(tf.shape(sums), 1.0 / tf.cast(num_classes, sums.dtype))
    counts = counts[:, tf.newaxis]
    return tf.where(counts > 0, sums / tf.maximum(counts, 1.0), uniform)


def correct_prediction_sums(logits: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """([C, C], [C]): per class, the summed softmax of its correctly classified examples and their number."""
    labels = tf.cast(labels, tf.int32)
    correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels), logits.dtype)
    selected = tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype) * correct[:, tf.newaxis]  # [B, C]
    return tf.matmul(selected, tf.nn.softmax(logits, axis=-1), transpose_a=True), tf.reduce_sum(selected, axis=0)


class OnlineLabelSmoothing(Method):
    def __init__(self, backbone, alpha: UnitInterval = 0.5, **kwargs):
        """Args:
        alpha: weight of the cross-entropy with the class's soft label; 1 - alpha goes to the hard label (the
            authors' code weighs both 0.5).
        """
        super().__init__(backbone, **kwargs)
        self.alpha = alpha
        shape = (self.num_classes, self.num_classes)
        state = dict(initializer="zeros", trainable=False, aggregation="only_first_replica")
        self.soft_labels = self.add_weight(shape=shape, name="class_soft_labels", **state)  # S^{t-1}
        self.correct_sums = self.add_weight(shape=shape, name="correct_prediction_sums", **state)
        self.correct_counts = self.add_weight(shape=(self.num_classes,), name="correct_prediction_counts", **state)
        self.accumulated_epoch = self.add_weight(shape=(), name="accumulated_epoch", **state)

    def start_epoch(self) -> None:
        """At the first step of an epoch (its epoch is past the accumulated one): S from the sums, new sums."""
        epoch = self.epoch()
        new = epoch > tf.convert_to_tensor(self.accumulated_epoch)
        sums, counts = tf.convert_to_tensor(self.correct_sums), tf.convert_to_tensor(self.correct_counts)
        self.soft_labels.assign(tf.where(new, class_soft_labels(sums, counts), tf.convert_to_tensor(self.soft_labels)))
        self.correct_sums.assign(tf.where(new, tf.zeros_like(sums), sums))
        self.correct_counts.assign(tf.where(new, tf.zeros_like(counts), counts))
        self.accumulated_epoch.assign(tf.maximum(epoch, tf.convert_to_tensor(self.accumulated_epoch)))

    def train_step(self, data):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        self.start_epoch()
        targets = tf.gather(tf.convert_to_tensor(self.soft_labels), tf.cast(labels, tf.int32))
        logits = self.fit_step(images, labels, targets)
        replica = tf.distribute.get_replica_context()
        if replica is not None and replica.num_replicas_in_sync > 1:
            logits, labels = replica.all_gather(logits, axis=0), replica.all_gather(labels, axis=0)
        sums, counts = correct_prediction_sums(tf.stop_gradient(logits), labels)
        self.correct_sums.assign_add(sums)
        self.correct_counts.assign_add(counts)
        return {m.name: m.result() for m in self.metrics}

    def loss_from_logits(self, labels, logits, targets):
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits)
        # Written out, not tf.nn.softmax_cross_entropy_with_logits: that op's gradient, softmax(z) - S[y],
        # assumes a target summing to 1, and S^0 is all zeros (whose term, and gradient, is 0).
        soft = -tf.reduce_sum(tf.stop_gradient(targets) * tf.nn.log_softmax(logits, axis=-1), axis=-1)
        return tf.reduce_mean((1.0 - self.alpha) * cross_entropy + self.alpha * soft)
