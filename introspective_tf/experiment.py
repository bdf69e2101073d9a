"""One training run, end to end: data, backbone, method, `fit`, evaluation, export, `results.json`.

`train.py` turns flags into an `ExperimentConfig` and calls `run`; notebooks and other tools can do
the same. Everything here is stock Keras: `fit` with its progress bar, `BackupAndRestore`,
`ModelCheckpoint`, `CSVLogger`, `TensorBoard`, `TerminateOnNaN`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import time
from typing import Any

import keras
import tensorflow as tf

from introspective_tf import data as data_lib
from introspective_tf import calibration, export, methods, models
from introspective_tf.errors import ConfigError


@dataclasses.dataclass
class ExperimentConfig:
    dataset: str = "cifar10"
    method: str = "introspective"
    model: str = "resnet20"
    epochs: int = 60
    batch_size: int = 128
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | step (x0.1 at 50% and 75% of training)
    steps_per_epoch: int = 0  # 0: one pass over the training data
    seed: int = 0
    output_dir: str = ""  # "" -> runs/<name>
    export_dir: str = ""  # "" -> saved_models/<name>; "none" -> no export
    data_dir: str | None = None
    eval_split: str = "test"  # test, or validation held out of train (also used when there is no test split)
    validation_split: float = 0.1
    train_limit: int = 0  # >0: keep only that many training examples
    jit_compile: bool = False
    verbose: int = 1  # Keras fit verbosity: 1 progress bar, 2 one line per epoch, 0 silent
    hparams: dict[str, Any] = dataclasses.field(default_factory=dict)  # the method's hyper-parameters

    @property
    def name(self) -> str:
        dataset = self.dataset.rstrip("/").split("/")[-1].replace("folder:", "")
        return f"{dataset}-{self.model}-{self.method}-seed{self.seed}"

    def validate(self) -> None:
        checks = [
            (self.epochs > 0, f"epochs must be > 0, not {self.epochs}"),
            (self.batch_size > 0, f"batch_size must be > 0, not {self.batch_size}"),
            (self.learning_rate > 0, f"learning_rate must be > 0, not {self.learning_rate}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), not {self.momentum}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, not {self.weight_decay}"),
            (self.schedule in ("cosine", "step"), f"schedule must be cosine or step, not '{self.schedule}'"),
            (self.steps_per_epoch >= 0, f"steps_per_epoch must be >= 0, not {self.steps_per_epoch}"),
            (self.train_limit >= 0, f"train_limit must be >= 0, not {self.train_limit}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


class StepTimer(keras.callbacks.Callback):
    """Wall time between consecutive training steps; the first step of each epoch is not counted, so
    graph tracing and the end-of-epoch validation never enter the median."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self._last: float | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._last = None

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._last is not None:
            self.seconds.append(now - self._last)
        self._last = now


def make_optimizer(config: ExperimentConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    total_steps = config.epochs * steps_per_epoch
    if config.schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=total_steps)
    else:
        boundaries = [int(total_steps * 0.5), int(total_steps * 0.75)]
        values = [config.learning_rate, config.learning_rate * 0.1, config.learning_rate * 0.01]
        learning_rate = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    return keras.optimizers.SGD(learning_rate, momentum=config.momentum)


def _writable_dir(path: str, what: str) -> str:
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".write-test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as err:
        raise ConfigError(f"{what} '{path}' is not writable: {err.strerror}") from None
    return path


def write_json(path: str, payload: dict) -> None:
    """Atomic write: a reader never sees half a file, and a crash keeps the previous one."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


def run(config: ExperimentConfig, extra_results: dict[str, Any] | None = None) -> dict[str, Any]:
    """Trains, evaluates and exports as `config` says; returns (and writes) the results dict."""
    config.validate()
    output_dir = _writable_dir(config.output_dir or os.path.join("runs", config.name), "output_dir")
    export_dir = None if config.export_dir == "none" else (config.export_dir or os.path.join("saved_models", config.name))
    if export_dir:
        _writable_dir(os.path.dirname(os.path.abspath(export_dir)), "export_dir's parent")
    keras.utils.set_random_seed(config.seed)

    data = data_lib.load(
        config.dataset, batch_size=config.batch_size, data_dir=config.data_dir, eval_split=config.eval_split,
        validation_split=config.validation_split, train_limit=config.train_limit, seed=config.seed,
    )
    full_epoch = data.num_train // config.batch_size
    if full_epoch == 0:
        raise ConfigError(f"batch_size {config.batch_size} is larger than the {data.num_train} training examples")
    steps_per_epoch = min(config.steps_per_epoch, full_epoch) if config.steps_per_epoch else full_epoch

    backbone = models.build(config.model, data.image_shape, data.num_classes, weight_decay=config.weight_decay)
    method = methods.build(config.method, backbone, config.hparams)
    method.compile(optimizer=make_optimizer(config, steps_per_epoch), jit_compile=config.jit_compile)

    timer = StepTimer()
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(output_dir, "backup")),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ModelCheckpoint(os.path.join(output_dir, "checkpoints", "last.weights.h5"), save_weights_only=True),
        keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"), append=True),
        keras.callbacks.TensorBoard(os.path.join(output_dir, "logs"), profile_batch=0),
        timer,
    ]
    start = time.perf_counter()
    history = method.fit(
        data.train.repeat(), epochs=config.epochs, steps_per_epoch=steps_per_epoch,
        validation_data=data.eval, callbacks=callbacks, verbose=config.verbose,
    )
    train_seconds = time.perf_counter() - start
    train_loss = history.history.get("loss", [])
    if train_loss and not math.isfinite(train_loss[-1]):
        raise ConfigError(
            f"training diverged (loss became {train_loss[-1]}); the last good weights are in "
            f"{os.path.join(output_dir, 'checkpoints')}: lower --learning_rate or change the method's flags"
        )

    evaluation = method.evaluate(data.eval, verbose=0, return_dict=True)
    calibration_results = calibration.evaluate(backbone, data.eval, output_dir, title=config.name)  # NLL, ECE, PNG
    backbone.save(os.path.join(output_dir, "model.keras"))
    if export_dir:
        export_dir = export.export_classifier(backbone, export_dir, data.class_names)

    results = {
        "dataset": config.dataset,
        "method": config.method,
        "model": config.model,
        "epochs": config.epochs,
        "steps_per_epoch": steps_per_epoch,
        "num_train": data.num_train,
        "num_eval": data.num_eval,
        "eval_split": data.eval_split,
        "eval_accuracy": float(evaluation["accuracy"]),
        "eval_loss": float(evaluation["loss"]),
        "train_seconds": train_seconds,
        "seconds_per_step": statistics.median(timer.seconds) if timer.seconds else None,
        "train_loss_history": [float(v) for v in train_loss],
        "final_train_metrics": {k: float(v[-1]) for k, v in history.history.items() if not k.startswith("val_")},
        "export_dir": export_dir,
        "config": dataclasses.asdict(config),
        **calibration_results,
        **(extra_results or {}),
    }
    write_json(os.path.join(output_dir, "results.json"), results)
    return results
