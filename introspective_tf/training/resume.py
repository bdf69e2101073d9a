"""Crash-safe training state: resume after SIGKILL, and never let a diverged epoch overwrite good weights.

Keras' `BackupAndRestore` and `ModelCheckpoint` write their `.h5` files in place, so a kill during the
write leaves a corrupt file, and after `TerminateOnNaN` stops a run they still save the NaN weights of
the diverging epoch. The callbacks here write to a temporary file and `os.replace` it into place (a
reader sees the old file or the new one, never half of one), and skip epochs whose loss or weights
are not finite.

Resuming: `Backup.restore(model)` loads the last backed-up epoch before `fit` and returns the epoch to
continue from (`fit(initial_epoch=...)`); `trim_history_csv` drops rows of epochs that will be run again,
so `history.csv` lists every epoch exactly once however often the run was interrupted.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Iterator

import keras
import numpy as np


def all_finite(model: keras.Model, logs: dict | None = None) -> bool:
    loss = (logs or {}).get("loss")
    if loss is not None and not math.isfinite(float(loss)):
        return False
    return all(np.all(np.isfinite(w)) for w in model.get_weights())


@contextlib.contextmanager
def replaced_atomically(path: str) -> Iterator[str]:
    """Yields a temporary path beside `path` (same name ending, so Keras accepts it); once the block has
    written it, moves it onto `path` in one step. An interruption leaves the old file or the new one,
    never half of one; a failing block leaves `path` untouched and no temporary file behind."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_weights_atomically(model: keras.Model, path: str) -> None:
    with replaced_atomically(path) as tmp:
        model.save_weights(tmp, overwrite=True)


def write_text_atomically(path: str, text: str) -> None:
    with replaced_atomically(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


class LastGoodCheckpoint(keras.callbacks.Callback):
    """`ModelCheckpoint(save_weights_only=True)` of every epoch whose loss and weights are finite."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.saved_epoch: int | None = None  # 1-based epoch of the weights in `path`, this run

    def on_epoch_end(self, epoch, logs=None):
        if all_finite(self.model, logs):
            save_weights_atomically(self.model, self.path)
            self.saved_epoch = epoch + 1


class Backup(keras.callbacks.Callback):
    """`BackupAndRestore` that writes atomically and never backs up a non-finite epoch.

    `backup_dir/state.json` names the weights file (model and optimizer) of the last finished epoch;
    it is replaced only after that file is complete. The folder is deleted when `fit` ends.
    """

    def __init__(self, backup_dir: str):
        super().__init__()
        self.backup_dir = backup_dir
        self.state_path = os.path.join(backup_dir, "state.json")

    def restore(self, model: keras.Model) -> int:
        """Loads the backed-up state into `model` (optimizer built); returns the epoch to continue from."""
        try:
            with open(self.state_path) as f:
                state = json.load(f)
        except FileNotFoundError:
            return 0
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(os.path.join(self.backup_dir, state["weights"]))
        return int(state["epoch"])

    def on_epoch_end(self, epoch, logs=None):
        if not all_finite(self.model, logs):
            return
        name = f"epoch-{epoch + 1:04d}.weights.h5"
        save_weights_atomically(self.model, os.path.join(self.backup_dir, name))
        write_text_atomically(self.state_path, json.dumps({"epoch": epoch + 1, "weights": name}))
        for old in os.listdir(self.backup_dir):
            if old.endswith(".weights.h5") and old != name:
                os.remove(os.path.join(self.backup_dir, old))

    def on_train_end(self, logs=None):
        shutil.rmtree(self.backup_dir, ignore_errors=True)


def trim_history_csv(path: str, first_epoch_to_run: int) -> None:
    """Before resuming at `first_epoch_to_run` (0-based): drops the interrupted run's rows of epochs
    that will run again, and a row cut off by the kill. Rows of earlier, finished runs are kept."""
    if first_epoch_to_run == 0 or not os.path.exists(path):
        return
    with open(path, newline="") as f:
        lines = f.read().splitlines(keepends=True)
    if len(lines) < 2:
        return
    epochs = [_epoch_of(line) for line in lines]
    run_start = max((i for i, e in enumerate(epochs) if e == 0), default=1)  # the interrupted run's first row
    kept = lines[:run_start] + [
        line
        for line, epoch in zip(lines[run_start:], epochs[run_start:])
        if line.endswith("\n") and epoch is not None and epoch < first_epoch_to_run
    ]
    if kept != lines:
        write_text_atomically(path, "".join(kept))


def _epoch_of(line: str) -> int | None:
    first = line.split(",", 1)[0]
    return int(first) if first.isdigit() else None
