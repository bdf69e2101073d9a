"""Training methods. Adding one: a new file with a `Method` subclass, and one line in `METHODS`.

A method's hyper-parameters are its constructor's keyword arguments (typed, with defaults) and the
`Args:` section of its docstring (`Method.hyperparameters`); everything else derives from that.
"""

from __future__ import annotations

from typing import Any

import keras

from introspective_tf.errors import ConfigError
from introspective_tf.methods.base import Hyperparameter, Method
from introspective_tf.methods.confidence_penalty import ConfidencePenalty
from introspective_tf.methods.dml import DeepMutualLearning
from introspective_tf.methods.introspective import Introspective
from introspective_tf.methods.kd import KnowledgeDistillation
from introspective_tf.methods.label_smoothing import LabelSmoothing
from introspective_tf.methods.online_label_smoothing import OnlineLabelSmoothing
from introspective_tf.methods.pskd import ProgressiveSelfKD
from introspective_tf.methods.pskd_explained import ExplainedProgressiveSelfKD
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
    "pskd_explained": ExplainedProgressiveSelfKD,
    "online_label_smoothing": OnlineLabelSmoothing,
}


def get(name: str) -> type[Method]:
    """The method class registered as `name`."""
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}': use one of {', '.join(METHODS)}")
    return METHODS[name]


def _cast(value: Any, declared: Hyperparameter, where: str) -> Any:
    """`value` as the declared type: text from a config line, or an int where a float is declared."""
    kind = declared.type
    try:
        if kind is bool and isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return value.lower() in ("true", "1")
        if kind in (int, float) and not isinstance(value, bool):
            cast = kind(value)
            if kind is int and isinstance(value, float) and cast != value:
                raise ValueError
            return cast
    except (TypeError, ValueError):
        raise ConfigError(f"{where}{declared.name}={value} is not a valid {kind.__name__}") from None
    return value


def resolve(name: str, given: dict[str, Any] | None = None, where: str = "") -> dict[str, Any]:
    """Every hyper-parameter of method `name`: its defaults, overridden by `given` (cast to the declared
    types). A key the method does not declare is an error, wherever it comes from."""
    declared = get(name).hyperparameters()
    prefix = f"{where}: " if where else ""
    for key in given or {}:
        if key not in declared:
            takes = ", ".join(declared) or "none"
            raise ConfigError(f"{prefix}method '{name}' takes no hyper-parameter '{key}' (it takes: {takes})")
    return {key: _cast((given or {}).get(key, h.default), h, prefix) for key, h in declared.items()}


def check_exclusive(name: str, given: dict[str, Any]) -> None:
    """A clear error when `given` (the hyper-parameters a user set) holds both of a pair the method
    declares exclusive (`exclusive_hyperparameters`), even at their default values."""
    for first, second in getattr(get(name), "exclusive_hyperparameters", ()):
        if first in given and second in given:
            raise ConfigError(f"give {first} or {second}, not both")


def build(name: str, backbone: keras.Model, hparams: dict[str, Any] | None = None) -> Method:
    """Wraps `backbone` in method `name` with `hparams` (the rest at their defaults)."""
    return get(name)(backbone, **resolve(name, hparams))


def all_hyperparameters() -> dict[str, tuple[type, str]]:
    """{name: (type, help)} over every method, for one command-line flag per name; a name several
    methods declare gets each method's help and default."""
    merged: dict[str, tuple[type, list[str]]] = {}
    for method, cls in METHODS.items():
        for name, h in cls.hyperparameters().items():
            kind, helps = merged.setdefault(name, (h.type, []))
            if kind is not h.type:
                raise TypeError(
                    f"hyper-parameter '{name}' is a {kind.__name__} in one method, a {h.type.__name__} in {method}"
                )
            helps.append(f"{method}: {h.help} (default {h.default!r})")
    return {name: (kind, " | ".join(helps)) for name, (kind, helps) in merged.items()}


for _registered, _method in METHODS.items():  # keras.models.load_model finds every method with no arguments
    keras.saving.register_keras_serializable(package="introspective_tf", name=_method.__name__)(_method)
