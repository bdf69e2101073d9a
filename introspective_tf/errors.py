"""The one error type for user mistakes: the CLI prints its message on one line and exits non-zero."""


class ConfigError(ValueError):
    """A flag, dataset, or file that cannot be used as given; the message says why and what to do."""
