"""The common shape of every training method: a small `keras.Model` that wraps a backbone classifier.

A method decides only what the backbone learns from. Subclasses override two hooks:

* `targets(images, labels)` -- anything the loss needs that is *not* differentiated (a teacher's
  predictions, the self-explanation soft target, ...). It runs before the gradient tape opens.
* `loss_from_logits(labels, logits, targets)` -- the batch-mean training loss.

A method whose targets come from the training forward pass itself (introspective learning with
`explanation_mode="shared"`) overrides `training_forward` instead of `targets`.

`train_step` and `test_step` are shared; a method that trains several networks at once (DML) can
override `train_step` itself, and one that keeps per-example state (PS-KD) sets `needs_example_index`
to receive `((images, index), labels)` batches and wraps `fit_step`. `plan(...)` tells a method the
size of the training run before `fit` (per-example stores, schedules by epoch). Only the backbone is
exported.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

import keras
import tensorflow as tf

from introspective_tf.errors import ConfigError


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    name: str
    type: type
    default: Any
    help: str


_TYPES = {"float": float, "int": int, "str": str, "bool": bool}


def _documented_args(docstring: str) -> dict[str, str]:
    """The `name: help` entries of a docstring's `Args:` section (continuation lines joined)."""
    entries, name, indent = {}, None, 0
    section = docstring.split("Args:", 1)[1] if "Args:" in docstring else ""
    for line in section.splitlines():
        depth = len(line) - len(line.lstrip())
        match = re.match(r"^\s*(\w+): (.*)$", line)
        if match and (name is None or depth <= indent):  # a new entry, not a continuation line
            name, indent = match.group(1), depth
            entries[name] = match.group(2).strip()
        elif name and line.strip():
            entries[name] += " " + line.strip()
    return entries


class Method(keras.Model):
    """Base class: wraps `backbone` (images -> logits); `call` is the backbone's prediction."""

    needs_example_index = False  # True: training batches are ((images, index), labels), index in [0, num_train)

    def __init__(self, backbone: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.num_classes = int(backbone.output_shape[-1])
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.built = backbone.built  # all weights live in the (already built) backbone
        self.steps_per_epoch, self.epochs = 1, 1  # set by `plan`

    @classmethod
    def hyperparameters(cls) -> dict[str, Hyperparameter]:
        """The method's hyper-parameters, declared once, in its constructor: name, type and default in
        the signature, help in the docstring's `Args:` section. train.py's flags, the configuration a
        run records, the comparison and the run tables all derive from this."""
        helps = _documented_args(cls.__init__.__doc__ or "")
        declared = {}
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            if name in ("self", "backbone") or parameter.kind is not parameter.POSITIONAL_OR_KEYWORD:
                continue
            annotation = parameter.annotation if isinstance(parameter.annotation, str) else ""
            kind = _TYPES.get(annotation, type(parameter.default))
            declared[name] = Hyperparameter(name, kind, parameter.default, helps.get(name, ""))
        return declared

    def plan(self, num_train: int, steps_per_epoch: int, epochs: int) -> None:
        """Called once before `fit` (and before a resume restores state) with the run's size."""
        self.steps_per_epoch, self.epochs = max(1, int(steps_per_epoch)), max(1, int(epochs))

    def epoch(self) -> tf.Tensor:
        """The 0-based epoch of the current step, as float32, from the optimizer's step count (so it
        survives a resume and needs no callback)."""
        return tf.cast(self.optimizer.iterations // self.steps_per_epoch, tf.float32)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def call(self, images, training=False):
        return self.backbone(images, training=training)

    def targets(self, images: tf.Tensor, labels: tf.Tensor) -> Any:
        return None

    def loss_from_logits(self, labels: tf.Tensor, logits: tf.Tensor, targets: Any) -> tf.Tensor:
        raise NotImplementedError

    def training_forward(self, images: tf.Tensor, labels: tf.Tensor, targets: Any) -> tuple[tf.Tensor, Any]:
        """(float32 logits, targets) of the training pass; runs inside the training tape."""
        return tf.cast(self.backbone(images, training=True), tf.float32), targets  # float32 loss under mixed precision

    def train_step(self, data):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        self.fit_step(images, labels, self.targets(images, labels))
        return {m.name: m.result() for m in self.metrics}

    def fit_step(self, images: tf.Tensor, labels: tf.Tensor, targets: Any) -> tf.Tensor:
        """One optimizer step on the backbone with `targets` held constant; returns the float32 logits."""
        variables = self.backbone.trainable_variables
        with tf.GradientTape() as tape:
            logits, targets = self.training_forward(images, labels, targets)
            loss = self.loss_from_logits(labels, logits, targets)
            total = loss + tf.add_n(self.backbone.losses) if self.backbone.losses else loss
            # As Keras' own train_step: each replica's batch-mean loss is divided by the replica
            # count, so the summed gradients equal those of the global batch on one device.
            total = total / tf.distribute.get_replica_context().num_replicas_in_sync
            total = self.optimizer.scale_loss(total)  # no-op except under loss scaling
        self.optimizer.apply(tape.gradient(total, variables), variables)
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(labels, logits)
        return logits

    def test_step(self, data):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        logits = tf.cast(self.backbone(images, training=False), tf.float32)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits))
        self.loss_tracker.update_state(loss, sample_weight=tf.shape(labels)[0])
        self.accuracy_tracker.update_state(labels, logits)
        return {m.name: m.result() for m in (self.loss_tracker, self.accuracy_tracker)}
