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

Allowed values are declared with each hyper-parameter, in its annotation, and the base class checks
them before a constructor runs (one-line `ConfigError`s): `alpha: UnitInterval = 0.5`,
`temperature: Positive = 4.0`, `mode: Literal["a", "b"] = "a"`, or
`explanation: Annotated[str, OneOf(EXPLAINERS)] = "gradcam"` for the names of a registry. A method
wrapper saves and loads whole (`get_config`, `keras.models.load_model`): its backbone, hyper-parameters
and the size `plan` was given, so per-example stores come back with their contents.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from typing import Annotated, Any, Literal

import keras
import tensorflow as tf

from introspective_tf.errors import ConfigError


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclasses.dataclass(frozen=True)
class Range:
    """The numbers a hyper-parameter allows, declared in its annotation: `Annotated[float, Range(0, 1)]`."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def allows(self, value: Any) -> bool:
        above = self.low is None or (value > self.low if self.open_low else value >= self.low)
        below = self.high is None or (value < self.high if self.open_high else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"


@dataclasses.dataclass(frozen=True)
class OneOf:
    """The names a text hyper-parameter allows: a tuple, or a registry whose keys are read when checked
    (so a kind registered later is allowed): `Annotated[str, OneOf(EXPLAINERS)]`."""

    names: Any

    def allows(self, value: Any) -> bool:
        return value in tuple(self.names)

    def __str__(self) -> str:
        return f"one of {tuple(self.names)}"


UnitInterval = Annotated[float, Range(0.0, 1.0)]
Positive = Annotated[float, Range(0.0, open_low=True)]
NonNegative = Annotated[float, Range(0.0)]


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    name: str
    type: type
    default: Any
    help: str
    allowed: Range | OneOf | None = None

    def check(self, value: Any) -> None:
        """A one-line ConfigError when `value` is not allowed."""
        if self.allowed is not None and not self.allowed.allows(value):
            shown = f"'{value}'" if isinstance(value, str) else value
            raise ConfigError(f"{self.name} must be {self.allowed}, not {shown}")


def _declared_type(hint: Any, default: Any) -> tuple[type, Range | OneOf | None]:
    """(type, allowed values) from an annotation: `float`, `Annotated[float, Range(...)]`, `Literal[...]`."""
    allowed = None
    if typing.get_origin(hint) is Annotated:
        hint, *extras = typing.get_args(hint)
        allowed = next((e for e in extras if isinstance(e, (Range, OneOf))), None)
    if typing.get_origin(hint) is Literal:
        names = typing.get_args(hint)
        return type(names[0]), OneOf(names)
    return (hint if isinstance(hint, type) else type(default)), allowed


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


@functools.cache
def _declared_hyperparameters(cls: type) -> tuple[tuple[str, Hyperparameter], ...]:
    helps = _documented_args(cls.__init__.__doc__ or "")
    try:
        hints = typing.get_type_hints(cls.__init__, include_extras=True)
    except NameError:  # an annotation naming what its module does not import: fall back to the defaults' types
        hints = {}
    declared = []
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name in ("self", "backbone") or parameter.kind is not parameter.POSITIONAL_OR_KEYWORD:
            continue
        kind, allowed = _declared_type(hints.get(name), parameter.default)
        declared.append((name, Hyperparameter(name, kind, parameter.default, helps.get(name, ""), allowed)))
    return tuple(declared)


_SOFTMAX_MESSAGE = (
    "model '{name}' ends in a softmax: the methods learn from logits (build it with "
    "classifier_activation=None, or no activation on its last layer)"
)


def _ends_in_softmax(model: keras.Model) -> bool:
    """Whether the layer that makes `model`'s output applies a softmax (a probabilities model)."""
    history = getattr(model.outputs[0], "_keras_history", None) if getattr(model, "outputs", None) else None
    layer = history.operation if history else (model.layers[-1] if getattr(model, "layers", None) else None)
    if isinstance(layer, keras.layers.Softmax):
        return True
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


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
        self._hyperparameter_values, self._planned = {}, None
        _check(not _ends_in_softmax(backbone), _SOFTMAX_MESSAGE.format(name=backbone.name))

    @classmethod
    def hyperparameters(cls) -> dict[str, Hyperparameter]:
        """The method's hyper-parameters, declared once, in its constructor: name, type, allowed values and
        default in the signature, help in the docstring's `Args:` section. train.py's flags, the
        configuration a run records, the comparison and the run tables all derive from this."""
        return dict(_declared_hyperparameters(cls))

    def __init_subclass__(cls, **kwargs):
        """Every constructor a subclass defines checks its declared hyper-parameters before it runs, and
        records their values for `get_config` (the outermost constructor's record is kept)."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def checked_init(self, backbone, *args, **kwargs):
            bound = inspect.signature(init).bind(self, backbone, *args, **kwargs).arguments
            declared = dict(_declared_hyperparameters(cls))
            values = {name: bound.get(name, h.default) for name, h in declared.items()}
            for name, h in declared.items():
                h.check(values[name])
            init(self, backbone, *args, **kwargs)
            self._hyperparameter_values = values

        cls.__init__ = checked_init

    def plan(self, num_train: int, steps_per_epoch: int, epochs: int) -> None:
        """Called once before `fit` (and before a resume restores state) with the run's size."""
        self.steps_per_epoch, self.epochs = max(1, int(steps_per_epoch)), max(1, int(epochs))
        self._planned = [int(num_train), int(steps_per_epoch), int(epochs)]

    def get_config(self) -> dict[str, Any]:
        """The backbone, the hyper-parameters and the planned run size: enough for `from_config` to make
        the same wrapper, weights and per-example stores included (their values come from the file)."""
        return {
            "name": self.name,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "hyperparameters": dict(self._hyperparameter_values),
            "planned": self._planned,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Method:
        backbone = keras.saving.deserialize_keras_object(config["backbone"])
        method = cls(backbone, name=config.get("name"), **config.get("hyperparameters", {}))
        if config.get("planned"):
            method.plan(*config["planned"])
        return method

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
