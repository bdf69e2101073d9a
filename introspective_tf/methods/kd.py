"""Knowledge distillation (Hinton et al. 2015) from a frozen teacher, and the paper's KD component study.

    L = (1 - alpha) CE(y, softmax(z)) + alpha T^2 KL(q || softmax(z / T)),   p = softmax(t / T)

`kd_target` picks q, to separate what the teacher's soft targets carry (docs/baselines.md):

* `full`: q = p, the teacher's soft targets.
* `uniform_non_gt`: q_y = p_y, and the rest 1 - p_y spread uniformly over the other classes: the
  ground-truth response without any class similarity.
* `shuffled_non_gt`: q_y = p_y, and p's non-GT responses randomly permuted among the non-GT classes
  of each example: the same set of responses, their class similarity destroyed.
* `constant_true_mass`: q_y = m for every example, a constant (`true_mass`: the mean of p_y over the
  training images), and 1 - m spread uniformly over the other classes: `uniform_non_gt` without the
  per-example variation of the ground-truth response. The target does not depend on the teacher's
  prediction, so the teacher is not run.
"""

from __future__ import annotations

from typing import Literal

import keras
import tensorflow as tf

from introspective_tf import soft_targets
from introspective_tf import teacher as teacher_lib
from introspective_tf.methods.base import Method, Positive, UnitInterval, _check

KDTarget = Literal["full", "uniform_non_gt", "shuffled_non_gt", "constant_true_mass"]


def uniform_non_gt(probabilities: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Keeps p_y and spreads 1 - p_y evenly over the C - 1 other classes."""
    num_classes = tf.shape(probabilities)[-1]
    true = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=probabilities.dtype)
    p_true = tf.reduce_sum(true * probabilities, axis=-1, keepdims=True)
    return true * p_true + (1.0 - true) * (1.0 - p_true) / tf.cast(num_classes - 1, probabilities.dtype)


def constant_true_mass(labels: tf.Tensor, num_classes: int, true_mass: float) -> tf.Tensor:
    """m on every example's true class and (1 - m) / (C - 1) on each other class, [B, C]."""
    true = tf.one_hot(tf.cast(labels, tf.int32), num_classes)
    return true * true_mass + (1.0 - true) * (1.0 - true_mass) / float(num_classes - 1)


def shuffled_non_gt(probabilities: tf.Tensor, labels: tf.Tensor, keys: tf.Tensor) -> tf.Tensor:
    """Keeps p_y and permutes the non-GT responses among the non-GT classes, in the order of `keys`.

    `keys` [B, C] are random numbers: the non-GT class with the k-th smallest key gives its response
    to the k-th non-GT class in class order. Vectorised: two argsorts and two gathers per batch.
    """
    num_classes = tf.shape(probabilities)[-1]
    true = tf.one_hot(tf.cast(labels, tf.int32), num_classes) > 0
    last = tf.constant(float("inf"), keys.dtype)
    # Both orders put the true class last, so it maps to itself.
    source = tf.argsort(tf.where(true, last, keys), axis=-1)
    class_order = tf.broadcast_to(tf.cast(tf.range(num_classes), keys.dtype), tf.shape(keys))
    destination = tf.argsort(tf.where(true, last, class_order), axis=-1)
    moved = tf.gather(probabilities, source, axis=1, batch_dims=1)  # moved[b, k] = p[b, source[b, k]]
    return tf.gather(moved, tf.argsort(destination, axis=-1), axis=1, batch_dims=1)


class KnowledgeDistillation(Method):
    def __init__(
        self,
        backbone,
        teacher: str = "",
        alpha: UnitInterval = 0.5,
        temperature: Positive = 4.0,
        kd_target: KDTarget = "full",
        true_mass: float = 0.0,
        **kwargs,
    ):
        """Args:
        teacher: the teacher: a run's model.keras or a SavedModel exported by this project.
        alpha: weight of the distillation term; 1 - alpha goes to the hard label.
        temperature: T of both softmaxes; the KL term is scaled by T^2.
        kd_target: the teacher's soft targets (full), its GT response with uniform non-GT mass (uniform_non_gt), the
            same true-class mass true_mass for every example with uniform non-GT mass (constant_true_mass), or
            shuffled non-GT responses (shuffled_non_gt).
        true_mass: with kd_target=constant_true_mass, every example's true-class mass (in (1/C, 1); the mean
            true-class mass of the teacher's softmax(t / T) on the training images); 0 = not set.
        """
        super().__init__(backbone, **kwargs)
        _check(
            kd_target != "constant_true_mass" or 1.0 / self.num_classes < true_mass < 1.0,
            f"kd_target=constant_true_mass needs true_mass in (1/C, 1) = ({1.0 / self.num_classes:.3g}, 1), "
            f"the teacher's mean true-class mass, not {true_mass}",
        )
        _check(
            true_mass == 0.0 or kd_target == "constant_true_mass",
            f"true_mass is used only with kd_target=constant_true_mass, not '{kd_target}'",
        )
        self.alpha, self.temperature, self.kd_target = alpha, temperature, kd_target
        self.true_mass = true_mass
        self.teacher = teacher_lib.load(teacher, backbone.input_shape[1:], self.num_classes)
        self.seed_generator = keras.random.SeedGenerator()  # the shuffles, reproducible from --seed

    def targets(self, images, labels):
        if self.kd_target == "constant_true_mass":
            return constant_true_mass(labels, self.num_classes, self.true_mass)
        probabilities = tf.nn.softmax(self.teacher(images) / self.temperature, axis=-1)
        if self.kd_target == "uniform_non_gt":
            return uniform_non_gt(probabilities, labels)
        if self.kd_target == "shuffled_non_gt":
            keys = keras.random.uniform(tf.shape(probabilities), seed=self.seed_generator)
            return shuffled_non_gt(probabilities, labels, keys)
        return probabilities

    def loss_from_logits(self, labels, logits, targets):
        return soft_targets.distillation_loss(labels, logits, targets, self.alpha, self.temperature)
