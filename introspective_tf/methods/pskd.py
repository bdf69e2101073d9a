"""Progressive self-knowledge distillation, PS-KD (Kim et al., ICCV 2021): the network's own
predictions of the previous epoch, mixed into the label with a weight that grows over training.

    q_i(t) = (1 - a_t) onehot(y_i) + a_t p_{t-1}(x_i),   a_t = alpha (t + 1) / T,   L = CE(q_i(t), softmax(z_i))

`p_{t-1}(x_i)` is the softmax of example i's logits in the training pass of the previous epoch (so
augmented and in training mode, as in the authors' code), kept in a [num_train, C] store that every
step updates at the batch's example indices. A row no step has written yet stands for the label: in
epoch 0 (so the first epoch learns from the labels alone), and for an example an epoch skipped before
it was ever seen (the last partial batch is dropped; `--steps_per_epoch` caps an epoch), so every target
sums to 1. An example skipped after it was seen keeps its latest prediction, as in the authors' code.
The epoch t comes from a count of the steps this method has taken, not from the optimizer's: under
mixed_float16 the loss-scale optimizer does not count the steps it skips on overflow, and a_t would lag.
The store, its written-rows mask and the step count are weights of this model: the backup of an
interrupted run holds them, and under a multi-replica strategy every replica writes the whole global
batch's rows (all-gathered), so the copies stay identical.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from introspective_tf.methods.base import Method, UnitInterval, _check


def progressive_target(labels: tf.Tensor, previous: tf.Tensor, alpha_t: tf.Tensor) -> tf.Tensor:
    """(1 - a_t) onehot(y) + a_t p_prev, [B, C]."""
    onehot = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(previous)[-1], dtype=previous.dtype)
    return (1.0 - alpha_t) * onehot + alpha_t * previous


class ProgressiveSelfKD(Method):
    needs_example_index = True

    def __init__(self, backbone, alpha: UnitInterval = 0.8, **kwargs):  # alpha_T = 0.8 in the paper
        """Args:
        alpha: alpha_T, the weight of the previous epoch's predictions in the last epoch; in epoch t it is
            alpha (t + 1) / epochs, so it grows linearly from alpha / epochs in the first epoch (whose target
            is the label all the same: there are no previous predictions yet).
        """
        super().__init__(backbone, **kwargs)
        self.alpha = alpha
        self.predictions = self.written = self.steps_taken = None  # made by `plan`

    def plan(self, num_train: int, steps_per_epoch: int, epochs: int) -> None:
        super().plan(num_train, steps_per_epoch, epochs)
        self.predictions = self.add_weight(
            shape=(num_train, self.num_classes),
            initializer="zeros",
            trainable=False,
            name="previous_epoch_predictions",
            aggregation="only_first_replica",
        )
        self.written = self.add_weight(  # 1 where a step has stored the example's prediction
            shape=(num_train,), initializer="zeros", trainable=False, name="written", aggregation="only_first_replica"
        )
        self.steps_taken = self.add_weight(
            shape=(),
            initializer="zeros",
            dtype="int64",
            trainable=False,
            name="steps_taken",
            aggregation="only_first_replica",
        )

    def epoch(self) -> tf.Tensor:
        """The 0-based epoch of the current step, from the steps this method has taken (every step counts)."""
        return tf.cast(tf.convert_to_tensor(self.steps_taken) // self.steps_per_epoch, tf.float32)

    def alpha_t(self) -> tf.Tensor:
        return self.alpha * (self.epoch() + 1.0) / float(self.epochs)

    def stored_targets(self, index: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        """The soft target of each example from the store as it stands (before this step writes it)."""
        onehot = tf.one_hot(tf.cast(labels, tf.int32), self.num_classes)
        stored = tf.gather(tf.convert_to_tensor(self.predictions), index)
        seen = tf.gather(tf.convert_to_tensor(self.written), index)[:, tf.newaxis]
        usable = seen * tf.cast(self.epoch() >= 1.0, tf.float32)  # epoch 0, or never written: the label
        previous = usable * stored + (1.0 - usable) * onehot
        return progressive_target(labels, previous, self.alpha_t())

    def train_step(self, data):
        _check(self.predictions is not None, "PS-KD needs plan(num_train, steps_per_epoch, epochs) before training")
        (images, index), labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        logits = self.fit_step(images, labels, self.stored_targets(index, labels))
        probabilities = tf.nn.softmax(logits, axis=-1)
        replica = tf.distribute.get_replica_context()
        if replica is not None and replica.num_replicas_in_sync > 1:
            index, probabilities = replica.all_gather(index, axis=0), replica.all_gather(probabilities, axis=0)
        self.predictions.value.scatter_update(tf.IndexedSlices(probabilities, index))
        self.written.value.scatter_update(tf.IndexedSlices(tf.ones_like(index, tf.float32), index))
        self.steps_taken.assign_add(1)
        return {m.name: m.result() for m in self.metrics}

    def loss_from_logits(self, labels, logits, targets):
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(tf.stop_gradient(targets), logits))
