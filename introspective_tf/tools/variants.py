"""Method variants as one command-line token: `key=value;key=value` settings of a method's hyper-parameters
(`benchmark --methods=introspective:explanation=gradient`, `agreement --variants=...`). Values stay
text: `methods.resolve` casts them to the declared types and rejects keys the method does not take,
as it does for train.py's flags and compare's run lines."""

from __future__ import annotations

from introspective_tf.errors import ConfigError


def parse_settings(settings: str) -> dict[str, str]:
    """'key=value;key=value' -> {key: value}."""
    hparams = {}
    for item in filter(None, settings.split(";")):
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ConfigError(f"a variant's settings look like key=value;key=value, not '{item}'")
        hparams[key] = value
    return hparams
