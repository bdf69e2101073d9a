"""The one error type for user mistakes: the CLI prints its message on one line and exits non-zero."""

import sys


class ConfigError(ValueError):
    """A flag, dataset, or file that cannot be used as given; the message says why and what to do."""


def option(name: str, value: str) -> str:
    """A setting as the user writes it: `--name=value` on the command line, `name="value"` in a notebook
    (where the user passes ExperimentConfig or function arguments, not flags)."""
    if "ipykernel" in sys.modules:
        return f'{name}="{value}"'
    return f"--{name}={value}"
