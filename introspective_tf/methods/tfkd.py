"""Teacher-free KD with a hand-designed teacher, Tf-KD_reg (Yuan et al., CVPR 2020): the KD loss with a
virtual teacher that is right with probability a and uniform over the other classes.

    u_c = a if c = y else (1 - a) / (C - 1),   q = softmax(u / T)
    L = (1 - alpha) CE(y, softmax(z)) + alpha * multiplier * KL(q || softmax(z)) / C

This is the form of the authors' public code (`loss_kd_regularization`): the teacher's *probabilities*
u are softened by a softmax at temperature T (so q is close to uniform: at a = 0.99, T = 20, C = 10 it
puts 0.105 on the true class), the student is not softened, and PyTorch's `KLDivLoss()` averages
over batch and classes, hence the / C. Defaults: a = 0.99 (fixed in that code), T = 20, alpha = 0.1,
multiplier = 100, the authors' CIFAR-100 ResNet-18 setting (their other networks' settings are in
docs/baselines.md, which also says where this differs from the paper's equations).
"""

from __future__ import annotations

from typing import Annotated

import tensorflow as tf

from introspective_tf import soft_targets
from introspective_tf.methods.base import Method, NonNegative, Positive, Range, UnitInterval


def virtual_teacher(labels: tf.Tensor, num_classes: int, correct_probability: float, temperature: float) -> tf.Tensor:
    """q = softmax(u / T) with u = a on the true class and (1 - a) / (C - 1) elsewhere, [B, C]."""
    onehot = tf.one_hot(tf.cast(labels, tf.int32), num_classes)
    u = onehot * correct_probability + (1.0 - onehot) * (1.0 - correct_probability) / (num_classes - 1)
    return tf.nn.softmax(u / temperature, axis=-1)


class TeacherFreeKD(Method):
    def __init__(
        self,
        backbone,
        alpha: UnitInterval = 0.1,
        temperature: Positive = 20.0,
        correct_probability: Annotated[float, Range(0.0, 1.0, open_low=True)] = 0.99,
        multiplier: NonNegative = 100.0,
        **kwargs,
    ):
        """Args:
        alpha: weight of the KL term to the virtual teacher; 1 - alpha goes to the hard label.
        temperature: T of the virtual teacher's softmax, softmax(u / T); the student's softmax is not softened.
        correct_probability: the virtual teacher's probability of the true class.
        multiplier: scale of the KL term (the authors' code divides it by C).
        """
        super().__init__(backbone, **kwargs)
        self.alpha, self.temperature = alpha, temperature
        self.correct_probability, self.multiplier = correct_probability, multiplier

    def targets(self, images, labels):
        return virtual_teacher(labels, self.num_classes, self.correct_probability, self.temperature)

    def loss_from_logits(self, labels, logits, targets):
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits)
        kl = soft_targets.kl_divergence_with_temperature(targets, logits, 1.0)
        return tf.reduce_mean((1.0 - self.alpha) * cross_entropy + self.alpha * self.multiplier * kl / self.num_classes)
