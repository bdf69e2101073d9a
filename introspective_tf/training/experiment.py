"""One training run, end to end: data, backbone, method, `fit`, evaluation, export, `results.json`.

`train.py` turns flags into an `ExperimentConfig` and calls `run`; notebooks and other tools can do
the same. Training is stock Keras `fit` (progress bar, `CSVLogger`, `TensorBoard`, `TerminateOnNaN`)
under a `tf.distribute` strategy, with the crash-safe backup and checkpoint callbacks of `resume.py`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import statistics
import time
from typing import Any

import keras
import tensorflow as tf

from introspective_tf import export, methods, models
from introspective_tf.errors import ConfigError
from introspective_tf.training import calibration, distribute, explanation_images, folder_cache, provenance, resume
from introspective_tf.training import data as data_lib

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


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
    data_cache_dir: str = ""  # folder datasets' decoded images between runs: "" -> ~/.cache/introspective_tf; "none"
    eval_split: str = "test"  # test; validation held out of train (also used without a test split); holdout
    validation_split: float = 0.1
    train_limit: int = 0  # >0: keep only that many training examples
    jit_compile: bool = False
    verbose: int = 1  # Keras fit verbosity: 1 progress bar, 2 one line per epoch, 0 silent
    validation_freq: int = 1  # evaluate on the eval split every this many epochs (and always at the end)
    validation_steps: int = 0  # >0: fit's validation reads only that many batches (the final evaluation all)
    # Draw held-out images' explanations and soft targets to TensorBoard after the first epoch, every
    # this many epochs and the last; 0 = off (training/explanation_images.py).
    explanation_images_every: int = 10
    hparams: dict[str, Any] = dataclasses.field(default_factory=dict)  # the method's hyper-parameters
    # Scale and reliability (docs/distribution.md).
    strategy: str = "default"  # default | mirrored | multiworker | tpu
    tpu: str = ""  # TPU name or grpc:// address for strategy=tpu
    sync_batchnorm: bool = True  # BatchNorm statistics over the global batch when replicas > 1
    mixed_precision: str = "float32"  # float32 | mixed_float16 | mixed_bfloat16
    deterministic: bool = False  # enable_op_determinism: same seed, same results

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
            (self.validation_freq >= 1, f"validation_freq must be >= 1, not {self.validation_freq}"),
            (self.validation_steps >= 0, f"validation_steps must be >= 0, not {self.validation_steps}"),
            (
                self.explanation_images_every >= 0,
                f"explanation_images_every must be >= 0 (0 = off), not {self.explanation_images_every}",
            ),
            (
                self.strategy in distribute.STRATEGIES,
                f"unknown strategy '{self.strategy}': use one of {', '.join(distribute.STRATEGIES)}",
            ),
            (
                self.mixed_precision in PRECISIONS,
                f"mixed_precision must be one of {', '.join(PRECISIONS)}, not '{self.mixed_precision}'",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        methods.resolve(self.method, self.hparams)  # an unknown method or hyper-parameter fails before any work


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
    """Fails now if `path` cannot be written, without creating it: the folder is made once the data and
    the model are ready, so a run that fails on its data leaves no empty folder behind."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"{what} '{path}' is not writable: '{existing}' is a file")
    try:
        probe = os.path.join(existing, f".write-test-{os.getpid()}")  # per process: workers probe at once
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as err:
        raise ConfigError(f"{what} '{path}' is not writable: {err.strerror}") from None
    return path


def write_json(path: str, payload: dict) -> None:
    """Atomic write: a reader never sees half a file, and a crash keeps the previous one."""
    resume.write_text_atomically(path, json.dumps(payload, indent=2, sort_keys=True, default=str))


def run(config: ExperimentConfig, extra_results: dict[str, Any] | None = None) -> dict[str, Any]:
    """Trains, evaluates and exports as `config` says; returns (and writes) the results dict.

    Run again with the same config after an interruption, it continues from the last finished epoch.
    """
    config.validate()
    method_class = methods.get(config.method)
    origin = provenance.record(os.path.basename(inspect.getfile(method_class)))  # the code as it is now, at the start
    strategy = distribute.make_strategy(config.strategy, config.tpu)  # before any other TensorFlow work
    distribute.check_batch_size(config.batch_size, strategy)
    chief = distribute.is_chief(strategy)
    output_dir = config.output_dir or os.path.join("runs", config.name)
    if not chief:  # other workers train in lockstep but write only to their own scratch folder
        output_dir = os.path.join(output_dir, ".workers", distribute.worker_name(strategy))
    output_dir = _writable_dir(output_dir, "output_dir")
    export_dir = (
        None if config.export_dir == "none" else (config.export_dir or os.path.join("saved_models", config.name))
    )
    export_dir = export_dir if chief else None
    if export_dir:
        _writable_dir(os.path.dirname(os.path.abspath(export_dir)), "export_dir's parent")
    cache_dir = (
        folder_cache.resolve_dir(config.data_cache_dir) if config.dataset.startswith(data_lib.FOLDER_PREFIX) else None
    )
    if cache_dir:
        _writable_dir(cache_dir, "data_cache_dir")
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.mixed_precision)
    try:
        with strategy.scope(), data_lib.naming_unreadable_images(config.dataset):
            extra = {"provenance": origin, **(extra_results or {})}
            return _train(config, strategy, output_dir, export_dir, cache_dir, extra)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(config, strategy, output_dir, export_dir, cache_dir, extra_results) -> dict[str, Any]:
    data = data_lib.load(
        config.dataset,
        batch_size=config.batch_size,
        data_dir=config.data_dir,
        eval_split=config.eval_split,
        validation_split=config.validation_split,
        train_limit=config.train_limit,
        seed=config.seed,
        example_index=methods.get(config.method).needs_example_index,
        cache_dir=cache_dir,
    )
    full_epoch = data.num_train // config.batch_size
    if full_epoch == 0:
        raise ConfigError(f"batch_size {config.batch_size} is larger than the {data.num_train} training examples")
    steps_per_epoch = min(config.steps_per_epoch, full_epoch) if config.steps_per_epoch else full_epoch

    backbone = models.build(config.model, data.image_shape, data.num_classes, weight_decay=config.weight_decay)
    if config.sync_batchnorm and strategy.num_replicas_in_sync > 1:
        distribute.synchronize_batchnorm(backbone)
    method = methods.build(config.method, backbone, config.hparams)
    method.plan(num_train=data.num_train, steps_per_epoch=steps_per_epoch, epochs=config.epochs)
    method.compile(optimizer=make_optimizer(config, steps_per_epoch), jit_compile=config.jit_compile)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        distribute.prepare_for_multiworker(method)

    os.makedirs(output_dir, exist_ok=True)  # only now: the data and the model are ready
    backup = resume.Backup(os.path.join(output_dir, "backup"))
    initial_epoch = backup.restore(method)
    history_path = os.path.join(output_dir, "history.csv")
    resume.trim_history_csv(history_path, initial_epoch)
    checkpoint = resume.LastGoodCheckpoint(os.path.join(output_dir, "checkpoints", "last.weights.h5"))
    timer = StepTimer()
    log_dir = os.path.join(output_dir, "logs")
    callbacks = [  # the history row is written before the backup: a kill in between only repeats a row
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(history_path, append=True),
        checkpoint,
        backup,
        keras.callbacks.TensorBoard(log_dir, profile_batch=0),
        timer,
    ]
    if config.verbose:  # the first step also traces the graph: seconds before the progress bar moves
        steps = f"{steps_per_epoch} steps per epoch, the first also tracing the graph"
        print(f"training on {data.num_train} images: {steps}", flush=True)
    if config.explanation_images_every:  # last: an epoch's history row and backup are written before it draws
        images, labels = explanation_images.first_examples(data.eval)
        callbacks.append(
            explanation_images.ExplanationImages(
                method,
                images,
                labels,
                data.class_names,
                os.path.join(log_dir, explanation_images.LOG_SUBDIR),
                every=config.explanation_images_every,
            )
        )
    start = time.perf_counter()
    history = method.fit(
        data.train.repeat(),
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        initial_epoch=initial_epoch,
        validation_data=data.eval,
        validation_freq=config.validation_freq,
        validation_steps=config.validation_steps or None,
        callbacks=callbacks,
        verbose=config.verbose,
        shuffle=False,  # data.py's pipeline shuffles; Keras ignores (and warns about) fit's shuffle for datasets
    )
    train_seconds = time.perf_counter() - start
    train_loss = history.history.get("loss", [])
    if train_loss and not math.isfinite(train_loss[-1]):
        kept = (
            f"the last good weights (epoch {checkpoint.saved_epoch}) are in {checkpoint.path}"
            if checkpoint.saved_epoch
            else f"no epoch of this run ended with finite weights, so {checkpoint.path} was not written"
        )
        raise ConfigError(
            f"training diverged (loss became {train_loss[-1]}) and was stopped; {kept}; "
            "lower --learning_rate or change the method's flags"
        )

    if config.verbose:
        print(f"evaluating on the {data.num_eval} {data.eval_split} images", flush=True)
    evaluation = method.evaluate(data.eval, verbose=0, return_dict=True)
    calibration_results = calibration.evaluate(backbone, data.eval, output_dir, title=config.name)  # NLL, ECE, PNG
    model_path = os.path.join(output_dir, "model.keras")
    with resume.replaced_atomically(model_path) as staging:
        backbone.save(staging)
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
        "resumed_from_epoch": initial_epoch,
        "num_replicas": strategy.num_replicas_in_sync,
        # Every hyper-parameter, defaults included: a later change of a default cannot make this run
        # look like one made with the new default (compare.py reuses runs by configuration).
        "config": {
            **dataclasses.asdict(config),
            "hparams": methods.resolve(config.method, config.hparams),
        },
        **calibration_results,
        **(extra_results or {}),
    }
    write_json(os.path.join(output_dir, "results.json"), results)
    return results
