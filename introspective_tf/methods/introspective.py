"""Introspective learning (Gu, Wu & Tresp, ACCV 2020): distil knowledge from online self-explanation.

At every step the backbone explains its prediction for *every* class (input gradients, computed in
inference mode -- see `explanations.py`), the explanations' similarity to the true class's becomes a
soft target, and the backbone learns from it as a student learns from a teacher in knowledge
distillation -- without a teacher. Targets are constants: no second-order gradients.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from introspective_tf import explanations, soft_targets
from introspective_tf.methods.base import Method, _check


class Introspective(Method):
    def __init__(
        self,
        backbone,
        alpha: float = 0.5,
        temperature: float = 4.0,
        similarity_temperature: float = 0.1,
        soft_target: str = "softmax",
        epsilon: float = 0.1,
        explanation_mode: str = "inference",
        explanation_implementation: str = "loop",
        **kwargs,
    ):
        super().__init__(backbone, **kwargs)
        _check(0.0 <= alpha <= 1.0, f"alpha must be in [0, 1], not {alpha}")
        _check(temperature > 0, f"temperature must be > 0, not {temperature}")
        _check(similarity_temperature > 0, f"similarity_temperature must be > 0, not {similarity_temperature}")
        _check(0.0 <= epsilon <= 1.0, f"epsilon must be in [0, 1], not {epsilon}")
        _check(soft_target in soft_targets.SOFT_TARGETS, f"soft_target must be one of {soft_targets.SOFT_TARGETS}, not '{soft_target}'")
        _check(explanation_mode in ("inference", "training"), f"explanation_mode must be inference or training, not '{explanation_mode}'")
        _check(explanation_implementation in explanations.IMPLEMENTATIONS,
               f"explanation_implementation must be one of {explanations.IMPLEMENTATIONS}, not '{explanation_implementation}'")
        self.alpha, self.temperature = alpha, temperature
        self.similarity_temperature, self.soft_target, self.epsilon = similarity_temperature, soft_target, epsilon
        self.explanation_mode, self.explanation_implementation = explanation_mode, explanation_implementation
        # How peaked the soft target is: the mean mass q puts on the true class (1.0 = one-hot label).
        self.target_true_mass = keras.metrics.Mean(name="target_true_mass")

    @property
    def metrics(self):
        return super().metrics + [self.target_true_mass]

    def targets(self, images, labels):
        explained = explanations.all_class_input_gradients(
            self.backbone, images, training=self.explanation_mode == "training",
            implementation=self.explanation_implementation,
        )
        explained = tf.cast(tf.stop_gradient(explained), tf.float32)  # similarity maths in float32, always
        similarity = soft_targets.cosine_similarity_to_true_class(explained, labels)
        target = soft_targets.soft_target(similarity, labels, self.soft_target, self.similarity_temperature, self.epsilon)
        self.target_true_mass.update_state(tf.gather(target, tf.cast(labels, tf.int32), axis=1, batch_dims=1))
        return target

    def loss_from_logits(self, labels, logits, targets):
        return soft_targets.distillation_loss(labels, logits, targets, self.alpha, self.temperature)
