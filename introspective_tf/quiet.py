"""TensorFlow's start-up notices, filtered: a CPU-only machine should not greet every command with CUDA errors.

TensorFlow's C++ side prints to the process's stderr while it loads -- before `TF_CPP_MIN_LOG_LEVEL`
applies -- and again when it first looks for devices: a oneDNN notice, "Could not find cuda drivers"
and, on a machine without an NVIDIA driver, "failed call to cuInit". This is the one place that sets
the log level (2: errors only, unless the user set it) and drops exactly those known lines while
TensorFlow starts. Every other line, errors included, is written back; `TF_CPP_MIN_LOG_LEVEL=0` or
`1` shows everything.

The commands' Python-side logging policy is here as well (`command_defaults`): absl's INFO lines off,
a few absl warnings that only precede one of the project's clearer errors dropped, and Python warnings
printed without a library's source line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator

# Start-up lines that carry no information on a machine that has no GPU driver.
_NOTICES = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
)
_NO_DRIVER_NOTICES = ("failed call to cuInit",)


def _has_nvidia_driver() -> bool:
    return sys.platform != "linux" or os.path.exists("/proc/driver/nvidia")


def _notices() -> tuple[str, ...]:
    return _NOTICES + (() if _has_nvidia_driver() else _NO_DRIVER_NOTICES)


def _wants_everything() -> bool:
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL") in ("0", "1")


@contextlib.contextmanager
def filtered_stderr(notices: tuple[str, ...]) -> Iterator[None]:
    """Collects what the process writes to file descriptor 2 and writes back every line that contains
    none of `notices`. The C++ side writes to the descriptor, not to `sys.stderr`, hence the fd swap."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as collected:
        os.dup2(collected.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            collected.seek(0)
            kept = [
                line
                for line in collected.read().decode(errors="replace").splitlines(keepends=True)
                if not any(notice in line for notice in notices)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def start_tensorflow() -> None:
    """Sets the log level, imports TensorFlow and lists its physical devices (which is when it looks for
    CUDA), with the start-up notices dropped. Listing physical devices leaves logical device
    configuration and multi-worker collectives free to be set up later."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or _wants_everything():
        return
    with filtered_stderr(_notices()):
        import tensorflow as tf

        tf.config.list_physical_devices()


def command_defaults() -> None:
    """For the commands (train.py, explain.py, compare), from their `main` (after flag parsing): absl's
    INFO lines -- TFDS announcing each dataset it builds, the SavedModel writer's notes -- are off
    unless the user passed `--verbosity`; `--verbosity=0` shows them, and the absl warnings that
    `_ABSL_NOTICES` drops. A Python warning is printed without the library's source line that
    Python's default format adds under it (e.g. a bare `warnings.warn(msg)`)."""
    from absl import flags
    from absl import logging as absl_logging

    if not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)
        drop_absl_notices()
    warnings.formatwarning = warning_without_source_line


# absl warnings that only precede one of the project's one-line errors, which says more: TFDS finds a
# dataset's version folder without dataset_info.json (it made the folder itself, or a download was cut
# off) before `data.py` reports that the dataset is not prepared, and where to put it.
_ABSL_NOTICES = (re.compile(r"^Variant folder .* has no dataset_info\.json$"),)


class _DropNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot format is not one of ours to judge
            return True
        return not any(notice.match(message) for notice in _ABSL_NOTICES)


def drop_absl_notices() -> None:
    """Drops `_ABSL_NOTICES` from absl's logger (what TFDS and other absl users log to); once per process."""
    logger = logging.getLogger("absl")
    if not any(isinstance(f, _DropNotices) for f in logger.filters):
        logger.addFilter(_DropNotices())


def warning_without_source_line(message, category, filename, lineno, line=None) -> str:
    """`warnings.formatwarning` without the source line under the message."""
    return f"{filename}:{lineno}: {category.__name__}: {message}\n"
