"""PS-KD's true-class mass, its wrong classes ordered by self-explanation: a teacher-free target with the
network's own per-example confidence (progressive self-knowledge distillation, Kim et al., ICCV 2021)
and the class similarity of its own explanations (introspective learning, Gu, Wu & Tresp, ACCV 2020).

    m_i(t) = (1 - a_t) + a_t p_{t-1}(y_i | x_i),   a_t = alpha (t + 1) / T     PS-KD's mass on the label
    r_ic   = softmax_{c != y_i}(s_ic / tau),   s_ic = sim(E_c(x_i), E_{y_i}(x_i))  introspection's wrong classes
    q_i    = m_i onehot(y_i) + (1 - m_i) r_i,   L = CE(q_i, softmax(z_i))

The true class gets exactly the mass PS-KD's target gives it; PS-KD spreads the rest as the previous
epoch's prediction does, this target as the explanation similarity does (the introspective target's
wrong-class part, from any explanation `Introspective` offers: Grad-CAM at the last block by default,
explained from the training pass itself). So the two differ only in where the mass off the label goes.

`p_{t-1}(y_i | x_i)` is the softmax on example i's true class in its training pass (augmented,
training mode) of the previous epoch, as in PS-KD. Only that one number per example is needed, so the
store is [num_train], a weight of this model (a backup holds it; under several replicas each replica
writes the all-gathered rows of the global batch). It starts at 1, which stands for the label: an
example that no step has written yet -- all of them in epoch 0, and one that an epoch skipped before
it was ever seen (the last partial batch is dropped; `--steps_per_epoch` caps an epoch) -- gets the
label's mass m = 1, and every target sums to 1. (PS-KD's own [num_train, C] store starts at zeros, so
such an example gets (1 - a_t) onehot(y), which sums to less than 1.) An example an epoch skipped
after it was seen keeps its latest prediction, as in PS-KD. Epoch 0 learns from the labels, as PS-KD
does: there are no previous predictions yet.
"""

from __future__ import annotations

from typing import Annotated, Literal

import keras
import tensorflow as tf

from introspective_tf import explanations, soft_targets
from introspective_tf.methods.base import Method, OneOf, Positive, Range, UnitInterval, _check
from introspective_tf.methods.introspective import ExplanationMode, Introspective


def wrong_class_spread(similarity: tf.Tensor, labels: tf.Tensor, tau: float) -> tf.Tensor:
    """r [B, C]: softmax(s / tau) over the classes other than the label, 0 on the label (the smoothing
    target's wrong-class part: all of its mass off the label)."""
    return soft_targets.smoothing_target(similarity, labels, tau, epsilon=1.0)


def explained_progressive_target(labels: tf.Tensor, true_mass: tf.Tensor, spread: tf.Tensor) -> tf.Tensor:
    """q [B, C] = m onehot(y) + (1 - m) r, for true-class masses m [B] and wrong-class spreads r [B, C]."""
    onehot = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(spread)[-1], dtype=spread.dtype)
    mass = tf.cast(true_mass, spread.dtype)[:, tf.newaxis]
    return mass * onehot + (1.0 - mass) * spread


class ExplainedProgressiveSelfKD(Introspective):
    """PS-KD's target with its wrong-class mass spread by explanation similarity (module docstring).

    It is an `Introspective` for the explanation machinery (every explanation, mode, similarity and
    estimator option), with `soft_target_from_similarity` returning the wrong-class spread r rather
    than the introspective target, and PS-KD's per-example store and loss. `targets` (before the
    training pass) is r, or None when the training pass itself is explained. The `target_true_mass`
    metric is the batch mean of m.
    """

    needs_example_index = True
    exclusive_hyperparameters = ()

    def __init__(
        self,
        backbone,
        alpha: UnitInterval = 0.8,  # PS-KD's alpha_T
        similarity_temperature: Positive = 0.1,
        explanation_mode: ExplanationMode = "auto",
        explanation_implementation: Annotated[str, OneOf(explanations.IMPLEMENTATIONS)] = "loop",
        explanation: Annotated[str, OneOf(explanations.EXPLAINERS)] = "gradcam",
        explanation_layer: str = "last_conv_block",
        similarity: Annotated[str, OneOf(soft_targets.SIMILARITIES)] = "cosine",
        explanation_estimator: Literal["exact", "jvp"] = "exact",
        num_probes: Annotated[int, Range(1)] = 4,
        **kwargs,
    ):
        """Args:
        alpha: alpha_T, PS-KD's weight of the previous epoch's prediction in the last epoch: in epoch t the
            true-class mass is (1 - a_t) + a_t p_{t-1}(y), a_t = alpha (t + 1) / epochs.
        similarity_temperature: tau of the wrong-class spread softmax(s / tau) over the classes other than the
            label (smaller: the mass off the label goes to the most similar classes).
        explanation_mode: which pass is explained: a separate inference or training pass, or the training pass
            itself (shared); auto: shared for gradcam, else inference.
        explanation_implementation: how all-class input gradients are computed: loop, batch_jacobian or pfor.
        explanation: the self-explanation: gradcam at explanation_layer (cost ~1x), gradient (input gradient) or
            gradient_x_input (exact: C backward passes).
        explanation_layer: the layer whose output Grad-CAM explains with; auto, or a model without a
            last_conv_block layer: the last spatial feature map before the logits.
        similarity: how a class's explanation is compared with the true class's.
        explanation_estimator: exact: one backward pass per class; jvp: forward-mode estimate whose cost does not
            grow with the class count.
        num_probes: random probes per example for explanation_estimator=jvp's norm estimates.
        """
        super().__init__(
            backbone,
            alpha=alpha,  # its meaning here is PS-KD's
            similarity_temperature=similarity_temperature,
            explanation_mode=explanation_mode,
            explanation_implementation=explanation_implementation,
            explanation=explanation,
            explanation_layer=explanation_layer,
            similarity=similarity,
            explanation_estimator=explanation_estimator,
            num_probes=num_probes,
            **kwargs,
        )
        self.previous_true_probability = None  # [num_train], made by `plan`

    def plan(self, num_train: int, steps_per_epoch: int, epochs: int) -> None:
        super().plan(num_train, steps_per_epoch, epochs)
        self.previous_true_probability = self.add_weight(
            shape=(num_train,),
            initializer="ones",  # the label: what an example no step has written yet learns from
            trainable=False,
            name="previous_epoch_true_class_probability",
            aggregation="only_first_replica",
        )

    def alpha_t(self) -> tf.Tensor:
        return self.alpha * (self.epoch() + 1.0) / float(self.epochs)

    def stored_true_mass(self, index: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        """m [B] from the store as it stands (before this step writes it): PS-KD's mass on the label."""
        stored = tf.gather(tf.convert_to_tensor(self.previous_true_probability), index)
        previous = tf.where(self.epoch() < 1.0, tf.ones_like(stored), stored)  # epoch 0: the label
        alpha_t = self.alpha_t()
        return (1.0 - alpha_t) + alpha_t * previous

    def soft_target_from_similarity(self, similarity, labels):
        """The wrong-class spread r from the similarities s (in place of the introspective target)."""
        similarity = tf.stop_gradient(tf.cast(similarity, tf.float32))
        return wrong_class_spread(similarity, labels, self.similarity_temperature)

    def training_forward(self, images, labels, targets):
        true_mass, spread = targets
        if self.explanation_mode == "shared":
            logits, spread = self.shared_forward(images, labels)
        else:
            logits, spread = Method.training_forward(self, images, labels, spread)
        self.true_mass_tracker.update_state(true_mass)
        return logits, explained_progressive_target(labels, true_mass, spread)

    def train_step(self, data):
        _check(
            self.previous_true_probability is not None,
            "pskd_explained needs plan(num_train, steps_per_epoch, epochs) before training",
        )
        (images, index), labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        true_mass = self.stored_true_mass(index, labels)
        logits = self.fit_step(images, labels, (true_mass, self.targets(images, labels)))
        true_probability = tf.gather(tf.nn.softmax(logits, axis=-1), tf.cast(labels, tf.int32), axis=1, batch_dims=1)
        replica = tf.distribute.get_replica_context()
        if replica is not None and replica.num_replicas_in_sync > 1:
            index, true_probability = replica.all_gather(index, axis=0), replica.all_gather(true_probability, axis=0)
        self.previous_true_probability.value.scatter_update(tf.IndexedSlices(true_probability, index))
        return {m.name: m.result() for m in self.metrics}

    def loss_from_logits(self, labels, logits, targets):
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(tf.stop_gradient(targets), logits))
