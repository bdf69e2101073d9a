"""Method variants on the command line: `key=value;key=value` settings of a method's hyper-parameters."""

from __future__ import annotations


def parse_settings(settings: str) -> dict:
    """'key=value;key=value' -> {key: value}, numbers as int or float."""
    hparams = {}
    for item in filter(None, settings.split(";")):
        key, _, value = item.partition("=")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        hparams[key] = value
    return hparams
