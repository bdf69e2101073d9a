"""Deep mutual learning (Zhang et al. 2018): peers trained together, each learning from the others.

    L_k = CE(y, p_k) + 1 / (K - 1) sum_{j != k} KL(p_j || p_k),   p_k = softmax(z_k)

The other peers' predictions are constants in L_k. Every L_k depends only on peer k's weights, so one
gradient of sum_k L_k updates all peers at once, each by its own loss (a simultaneous update rather
than the paper's alternating one). The first peer is the `backbone`: it is evaluated and exported.
"""

from __future__ import annotations

from typing import Annotated

import keras
import tensorflow as tf

from introspective_tf import soft_targets
from introspective_tf.methods.base import Method, Range


def mutual_learning_losses(labels: tf.Tensor, peer_logits: list[tf.Tensor]) -> list[tf.Tensor]:
    """The batch-mean loss of every peer, in order."""
    others = len(peer_logits) - 1
    peer_probabilities = [tf.stop_gradient(tf.nn.softmax(z, axis=-1)) for z in peer_logits]
    losses = []
    for k, logits in enumerate(peer_logits):
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits)
        mimicry = tf.add_n(
            [
                soft_targets.kl_divergence_with_temperature(p, logits, 1.0)
                for j, p in enumerate(peer_probabilities)
                if j != k
            ]
        )
        losses.append(tf.reduce_mean(cross_entropy + mimicry / others))
    return losses


class DeepMutualLearning(Method):
    def __init__(self, backbone, peers: Annotated[int, Range(2)] = 2, **kwargs):
        """Args:
        peers: networks trained together; the first is exported.
        """
        super().__init__(backbone, **kwargs)
        # Same architecture, fresh weights (clone_model re-initialises every layer).
        self.other_peers = [keras.models.clone_model(backbone) for _ in range(peers - 1)]

    def train_step(self, data):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        peers = [self.backbone, *self.other_peers]
        variables = [v for peer in peers for v in peer.trainable_variables]
        with tf.GradientTape() as tape:
            peer_logits = [peer(images, training=True) for peer in peers]
            losses = mutual_learning_losses(labels, peer_logits)
            regularization = [loss for peer in peers for loss in peer.losses]
            total = tf.add_n(losses + regularization)
            # As Method.train_step: per-replica batch-mean loss divided by the replica count.
            total = total / tf.distribute.get_replica_context().num_replicas_in_sync
            total = self.optimizer.scale_loss(total)
        self.optimizer.apply(tape.gradient(total, variables), variables)
        self.loss_tracker.update_state(losses[0])  # the exported peer's loss and accuracy
        self.accuracy_tracker.update_state(labels, peer_logits[0])
        return {m.name: m.result() for m in self.metrics}
