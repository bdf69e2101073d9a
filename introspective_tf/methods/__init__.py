"""Training methods. Adding one: a new file with a `Method` subclass, and one line in `METHODS`."""

from __future__ import annotations

import inspect
from typing import Any

import keras

from introspective_tf.errors import ConfigError
from introspective_tf.methods.base import Method
from introspective_tf.methods.confidence_penalty import ConfidencePenalty
from introspective_tf.methods.dml import DeepMutualLearning
from introspective_tf.methods.introspective import Introspective
from introspective_tf.methods.kd import KnowledgeDistillation
from introspective_tf.methods.label_smoothing import LabelSmoothing
from introspective_tf.methods.pskd import ProgressiveSelfKD
from introspective_tf.methods.standard import Standard
from introspective_tf.methods.tfkd import TeacherFreeKD

METHODS: dict[str, type[Method]] = {
    "standard": Standard,
    "introspective": Introspective,
    "label_smoothing": LabelSmoothing,
    "confidence_penalty": ConfidencePenalty,
    "kd": KnowledgeDistillation,
    "dml": DeepMutualLearning,
    "pskd": ProgressiveSelfKD,
    "tfkd_reg": TeacherFreeKD,
}


def get(name: str) -> type[Method]:
    """The method class registered as `name`."""
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}': use one of {', '.join(METHODS)}")
    return METHODS[name]


def build(name: str, backbone: keras.Model, hparams: dict[str, Any] | None = None) -> Method:
    """Wraps `backbone` in method `name`, passing it those `hparams` its constructor takes."""
    cls = get(name)
    accepted = inspect.signature(cls.__init__).parameters
    return cls(backbone, **{k: v for k, v in (hparams or {}).items() if k in accepted and k != "backbone"})


def default_hparams(name: str) -> dict[str, Any]:
    """The hyper-parameters method `name` takes, with its constructor's defaults."""
    parameters = inspect.signature(METHODS[name].__init__).parameters
    return {
        k: p.default
        for k, p in parameters.items()
        if k not in ("self", "backbone") and p.kind is p.POSITIONAL_OR_KEYWORD
    }
