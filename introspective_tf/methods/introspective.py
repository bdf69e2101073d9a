"""Introspective learning (Gu, Wu & Tresp, ACCV 2020): distil knowledge from online self-explanation.

At every step the backbone explains its prediction for *every* class (by default Grad-CAM maps at its
last convolutional block; or input gradients, computed in inference mode -- see `explanations.py`),
the explanations' similarity to the true class's becomes a soft target, and the backbone learns from
it as a student learns from a teacher in knowledge distillation -- without a teacher. Targets are
constants: no second-order gradients.

`explanation_mode` says which forward pass is explained: a separate one in inference or training
mode, or `"shared"`: the training pass itself, so that explaining costs only the per-class backward
passes -- for Grad-CAM at the last block, tiny ones through the pooling and dense head. `"auto"` (default) picks
shared for Grad-CAM and a separate inference-mode pass for input gradients.

What counts as an explanation (`explanation`, `explanation_layer`), how two are compared
(`similarity`), and whether similarities are computed exactly (C backward passes) or estimated with
forward-mode products whose cost does not grow with C (`explanation_estimator="jvp"`, `num_probes`)
are constructor arguments; docs/fast_introspection.md has the measured trade-offs. `introspect_from_epoch` and
`warmup_epochs` hold the soft-target weight at 0 for the first epochs and then ramp it up.
"""

from __future__ import annotations

import math
import typing
from typing import Annotated, Literal

import keras
import tensorflow as tf

from introspective_tf import explanations, jvp_similarity, soft_targets
from introspective_tf.methods.base import Method, NonNegative, OneOf, Positive, Range, UnitInterval, _check

ExplanationMode = Literal["auto", "inference", "training", "shared"]
EXPLANATION_MODES = typing.get_args(ExplanationMode)

TrueMassScope = Literal["batch", "example"]
TRUE_MASS_SCOPES = typing.get_args(TrueMassScope)
_LOG_TAU_RANGE = (math.log(1e-4), math.log(1e4))  # bisection bracket for tau
_BISECTION_STEPS = 30  # the bracket's log-width / 2^30 < 2e-8: tau to float32 precision


def true_class_mass(target: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """q_y [B]: the mass a target [B, C] puts on each example's true class."""
    return tf.gather(target, tf.cast(labels, tf.int32), axis=1, batch_dims=1)


def temperature_for_true_mass(similarity: tf.Tensor, labels: tf.Tensor, true_mass: float, scope: str) -> tf.Tensor:
    """The tau at which softmax(s / tau) puts `true_mass` on the true class: one tau for the batch
    (`scope="batch"`: the batch's *mean* true-class mass is `true_mass`, so examples keep the relative
    softness their similarities give them), or one per example (`scope="example"`: [B, 1], every
    example's true-class mass is `true_mass`).

    s_y is every example's largest similarity (1 for cosine and pearson, 0 for neg_l2), so the mass
    falls monotonically from 1 (tau -> 0) to 1/C (tau -> inf) and a fixed number of bisection steps on
    log tau finds it in the graph. A mass no tau in [1e-4, 1e4] reaches (an example whose classes are all
    equally similar, such as one whose true-class map is all zero, stays uniform at any tau) ends at the
    bracket's edge: the target stays finite and sums to 1.
    """
    per_example = scope == "example"
    shape = tf.stack([tf.shape(similarity)[0], 1]) if per_example else tf.constant([], tf.int32)
    low = tf.fill(shape, tf.constant(_LOG_TAU_RANGE[0], similarity.dtype))
    high = tf.fill(shape, tf.constant(_LOG_TAU_RANGE[1], similarity.dtype))
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        mass = true_class_mass(tf.nn.softmax(similarity / tf.exp(middle), axis=-1), labels)
        mass = mass[:, tf.newaxis] if per_example else tf.reduce_mean(mass)
        too_soft = mass < true_mass  # mass falls as tau grows: the answer lies below `middle`
        high, low = tf.where(too_soft, middle, high), tf.where(too_soft, low, middle)
    return tf.exp(0.5 * (low + high))


def target_with_true_mass(similarity: tf.Tensor, labels: tf.Tensor, true_mass: float, scope: str) -> tf.Tensor:
    """softmax(s / tau) with tau solved for `true_mass` (`temperature_for_true_mass`); 1.0 is the label."""
    if true_mass >= 1.0:
        return tf.one_hot(tf.cast(labels, tf.int32), tf.shape(similarity)[-1], dtype=similarity.dtype)
    tau = tf.stop_gradient(temperature_for_true_mass(similarity, labels, true_mass, scope))
    return soft_targets.softmax_target(similarity, tau)


def resolve_explanation_mode(mode: str, explanation: str, estimator: str = "exact") -> str:
    """`auto`: the explainer's own choice (`Explainer.default_mode`): Grad-CAM explains the training pass
    itself (its per-class part is only the small head, so a separate pass would be most of its cost);
    input gradients use a separate inference-mode pass (their C backward passes dominate, and they
    would couple the batch through BatchNorm). The JVP estimator always runs its own inference pass."""
    if mode != "auto":
        return mode
    return explanations.EXPLAINERS[explanation].default_mode if estimator == "exact" else "inference"


class Introspective(Method):
    exclusive_hyperparameters = (("similarity_temperature", "target_true_mass"),)

    def __init__(
        self,
        backbone,
        alpha: UnitInterval = 0.2,  # defaults chosen on a validation split: docs/sweep.md
        temperature: Positive = 1.0,
        similarity_temperature: Positive = 0.01,
        target_true_mass: UnitInterval = 0.0,
        target_mass_scope: TrueMassScope = "batch",
        soft_target: Annotated[str, OneOf(soft_targets.SOFT_TARGETS)] = "softmax",
        epsilon: UnitInterval = 0.1,
        explanation_mode: ExplanationMode = "auto",
        explanation_implementation: Annotated[str, OneOf(explanations.IMPLEMENTATIONS)] = "loop",
        explanation: Annotated[str, OneOf(explanations.EXPLAINERS)] = "gradcam",  # docs/fast_introspection.md
        explanation_layer: str = "last_conv_block",
        similarity: Annotated[str, OneOf(soft_targets.SIMILARITIES)] = "cosine",
        explanation_estimator: Literal["exact", "jvp"] = "exact",
        num_probes: Annotated[int, Range(1)] = 4,
        warmup_epochs: NonNegative = 0.0,
        introspect_from_epoch: Annotated[int, Range(0)] = 0,
        **kwargs,
    ):
        """Args:
        alpha: weight of the soft-target term; 1 - alpha goes to the hard label.
        temperature: student temperature T in KL(q || softmax(z / T)), scaled by T^2.
        similarity_temperature: tau in q = softmax(similarity / tau).
        target_true_mass: instead of a fixed tau, solve tau at every step so that the softmax target's
            true-class mass is this (in (1/C, 1]; 1 is the label); 0 = off, use similarity_temperature.
        target_mass_scope: with target_true_mass: batch (one tau per batch, its mean true-class mass is the
            setting; examples keep their relative softness) or example (one tau per example).
        soft_target: softmax: q = softmax(s / tau); smoothing: 1 - eps on y, eps spread by softmax(s / tau).
        epsilon: mass off the true class for soft_target=smoothing.
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
        warmup_epochs: ramp alpha linearly from 0 over this many epochs (after introspect_from_epoch).
        introspect_from_epoch: no soft-target term before this epoch (an untrained network's explanations are
            noise).
        """
        super().__init__(backbone, **kwargs)
        lowest = 1.0 / self.num_classes
        _check(
            target_true_mass == 0.0 or lowest < target_true_mass,
            f"target_true_mass must be 0 (off) or in (1/C, 1] = ({lowest:.3g}, 1], not {target_true_mass}",
        )
        _check(
            target_true_mass == 0.0
            or similarity_temperature == self.hyperparameters()["similarity_temperature"].default,
            "give target_true_mass or similarity_temperature, not both: the true-class mass sets tau",
        )
        _check(
            target_true_mass == 0.0 or soft_target == "softmax",
            "target_true_mass needs soft_target=softmax (the smoothing target's true-class mass is 1 - epsilon)",
        )
        _check(
            explanation_estimator == "exact" or explanation in jvp_similarity.estimable(),
            f"explanation_estimator=jvp estimates {jvp_similarity.estimable()} explanations, not '{explanation}' "
            "(add explanation=gradient, or use explanation_estimator=exact)",
        )
        explanation_mode = resolve_explanation_mode(explanation_mode, explanation, explanation_estimator)
        _check(
            explanation_estimator == "exact" or explanation_mode == "inference",
            "explanation_estimator=jvp needs explanation_mode=inference, where examples are independent",
        )
        self.warmup_epochs, self.introspect_from_epoch = warmup_epochs, introspect_from_epoch
        self.explanation, self.similarity = explanation, similarity
        self.explanation_estimator, self.num_probes = explanation_estimator, num_probes
        self.explainer = explanations.explainer(
            explanation, backbone, layer=explanation_layer, implementation=explanation_implementation
        )
        self._probe_seed = keras.random.SeedGenerator() if explanation_estimator == "jvp" else None
        self.alpha, self.temperature = alpha, temperature
        self.similarity_temperature, self.soft_target, self.epsilon = similarity_temperature, soft_target, epsilon
        self.target_true_mass, self.target_mass_scope = target_true_mass, target_mass_scope
        self.explanation_mode, self.explanation_implementation = explanation_mode, explanation_implementation
        # How peaked the soft target is: the mean mass q puts on the true class (1.0 = one-hot label).
        self.true_mass_tracker = keras.metrics.Mean(name="target_true_mass")

    @property
    def metrics(self):
        return super().metrics + [self.true_mass_tracker]

    def targets(self, images, labels):
        if self.explanation_mode == "shared":
            return None  # computed from the training pass itself, in training_forward
        return self.soft_target_from_similarity(self.similarity_to_true_class(images, labels), labels)

    def similarity_to_true_class(self, images, labels):
        """s [B, C]: every class's explanation compared with the true class's, from a pass of its own
        (training mode only for explanation_mode=training)."""
        training = self.explanation_mode == "training"
        if self.explanation_estimator == "jvp":
            similarity = jvp_similarity.estimate_similarity(
                self.backbone,
                images,
                labels,
                explanation=self.explanation,
                similarity=self.similarity,
                num_probes=self.num_probes,
                seed=self._probe_seed,
                training=training,
            )
        else:
            explained = self.explainer.explain(images, training=training)
            similarity = soft_targets.similarity_to_true_class(tf.cast(explained, tf.float32), labels, self.similarity)
        return similarity

    def training_forward(self, images, labels, targets):
        if self.explanation_mode != "shared":
            return super().training_forward(images, labels, targets)
        return self.shared_forward(images, labels)

    def shared_forward(self, images, labels):
        """(float32 logits, q) from one training-mode pass, explained from the pass itself.

        The explanation tape records the same ops as the training tape (no extra forward pass); its
        per-class gradients are held constant, so the training gradient does not go through them.
        """
        outputs, explained = self.explainer.explained_pass(images, training=True)
        similarity = soft_targets.similarity_to_true_class(tf.cast(explained, tf.float32), labels, self.similarity)
        logits = self.explainer.logits(outputs)
        return tf.cast(logits, tf.float32), self.soft_target_from_similarity(similarity, labels)

    def soft_target_from_similarity(self, similarity, labels):
        """q from s, the one function training and the tools use (tracked by `target_true_mass`)."""
        target = self.untracked_soft_target(similarity, labels)
        self.true_mass_tracker.update_state(true_class_mass(target, labels))
        return target

    def untracked_soft_target(self, similarity, labels):
        """q from s without updating the `target_true_mass` metric: for observers such as the TensorBoard
        explanation images, which must leave the metrics training logs as they are."""
        similarity = tf.stop_gradient(tf.cast(similarity, tf.float32))
        if self.target_true_mass:
            return target_with_true_mass(similarity, labels, self.target_true_mass, self.target_mass_scope)
        return soft_targets.soft_target(similarity, labels, self.soft_target, self.similarity_temperature, self.epsilon)

    def effective_alpha(self):
        """alpha, or while an untrained network's explanations are still noise: 0 before `introspect_from_epoch`,
        then ramped linearly from 0 to alpha over `warmup_epochs` (step by step)."""
        if not self.warmup_epochs and not self.introspect_from_epoch:
            return self.alpha
        epochs_done = tf.cast(self.optimizer.iterations, tf.float32) / float(self.steps_per_epoch) - float(
            self.introspect_from_epoch
        )
        ramp = (
            tf.clip_by_value(epochs_done / self.warmup_epochs, 0.0, 1.0)
            if self.warmup_epochs
            else tf.cast(epochs_done >= 0, tf.float32)
        )
        return self.alpha * ramp

    def loss_from_logits(self, labels, logits, targets):
        return soft_targets.distillation_loss(labels, logits, targets, self.effective_alpha(), self.temperature)
