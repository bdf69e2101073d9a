r"""Seconds per training step of each method on the same model, batch and data, in one process.

    python -m introspective_tf.tools.benchmark --model=resnet20 --batch_size=128 --num_classes=10,100

A variant sets hyper-parameters after a colon, e.g.
`--methods=standard,introspective,introspective:explanation_implementation=batch_jacobian`.
`METHOD+explanation_images` times METHOD's step followed by the TensorBoard explanation-images
callback's end of an epoch it does not draw at (the worst case: as if every step ended an epoch);
`METHOD+explanation_images_drawn` times the callback drawing one logging epoch (its ratio is that
epoch's cost in steps).
Methods are timed in interleaved rounds (A B C A B C ...) so that drift in the machine's speed hits
all of them alike; the table gives each one's median step time and its ratio to the first method,
one table per class count (all methods rebuilt for each), next to the autodiff floor (3 + C) / 3.
Step time does not depend on pixel values, so the batch is random pixels of the requested shape.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time

import keras
import numpy as np
from absl import app, flags

from introspective_tf import methods, models
from introspective_tf.errors import ConfigError
from introspective_tf.tools import tables
from introspective_tf.tools.variants import parse_settings
from introspective_tf.training import explanation_images, provenance, records

flags.DEFINE_string("model", "resnet20", "Backbone.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_list("num_classes", ["10"], "Number(s) of classes; one table each, e.g. 10,100.")
flags.DEFINE_list("image_shape", ["32", "32", "3"], "Image height, width, channels.")
flags.DEFINE_list("methods", ["standard", "introspective"], "Methods (or method:key=value,... variants) to time.")
flags.DEFINE_integer("rounds", 5, "Interleaved rounds.")
flags.DEFINE_integer("steps", 5, "Timed steps per method per round.")
flags.DEFINE_string(
    "output",
    "",
    "Also add one JSON row per method and class count to this file (results/benchmark.jsonl feeds the docs).",
)
FLAGS = flags.FLAGS


_CALLBACK_TIMINGS = ("explanation_images", "explanation_images_drawn")  # the `+` suffixes


def _parse_variant(spec: str) -> tuple[str, dict, str]:
    """ "name:key=value;...+timing" -> (name, hyper-parameters, timing: "" for the step alone)."""
    spec, _, timing = spec.partition("+")
    if timing and timing not in _CALLBACK_TIMINGS:
        raise ConfigError(f"unknown timing '+{timing}' (known: {', '.join(_CALLBACK_TIMINGS)})")
    name, _, settings = spec.partition(":")
    return name, parse_settings(settings), timing


def _explanation_images(trainer: keras.Model, images: np.ndarray, labels: np.ndarray, log_dir: str):
    """The callback train.py adds, drawing every 10th epoch of a long run; after `on_epoch_end(1)` it has
    not drawn (epoch 1 is not a logging epoch)."""
    count = explanation_images.NUM_EXAMPLES
    callback = explanation_images.ExplanationImages(
        trainer, images[:count], labels[:count], [str(c) for c in range(trainer.num_classes)], log_dir, every=10
    )
    callback.set_model(trainer)
    callback.set_params({"epochs": 1000})
    return callback


def _timed_step(trainer: keras.Model, inputs, labels: np.ndarray, timing: str, log_dir: str):
    """What one timed repetition of a variant runs (module docstring)."""
    if not timing:
        return lambda: trainer.train_on_batch(inputs, labels)
    images = inputs[0] if isinstance(inputs, tuple) else inputs
    callback = _explanation_images(trainer, images, labels, log_dir)
    if timing == "explanation_images_drawn":
        return lambda: callback.on_epoch_end(0)

    def step_and_epoch_end():
        trainer.train_on_batch(inputs, labels)
        callback.on_epoch_end(1)

    return step_and_epoch_end


def time_methods(specs: list[str], model: str, batch_size: int, num_classes: int, image_shape, rounds: int, steps: int):
    """Returns {spec: [seconds per step, ...]} measured in interleaved rounds."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch_size, *image_shape)).astype("float32")
    labels = rng.integers(0, num_classes, batch_size).astype("int32")
    trainers, scratch = {}, tempfile.mkdtemp()
    for spec in specs:
        name, hparams, timing = _parse_variant(spec)
        keras.utils.set_random_seed(0)
        backbone = models.build(model, image_shape, num_classes)
        trainer = methods.build(name, backbone, hparams)
        trainer.plan(num_train=batch_size, steps_per_epoch=1, epochs=1)
        trainer.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=False)
        inputs = (images, np.arange(batch_size, dtype="int32")) if trainer.needs_example_index else images
        trainers[spec] = _timed_step(trainer, inputs, labels, timing, os.path.join(scratch, str(len(trainers))))
        for _ in range(2):  # trace and warm up
            trainers[spec]()
    seconds = {spec: [] for spec in specs}
    for _ in range(rounds):
        for spec, step in trainers.items():
            for _ in range(steps):
                start = time.perf_counter()
                step()
                seconds[spec].append(time.perf_counter() - start)
    shutil.rmtree(scratch, ignore_errors=True)
    return seconds


def main(argv):
    del argv
    try:
        for spec in FLAGS.methods:  # every variant checked before anything is timed
            name, hparams, _ = _parse_variant(spec)
            methods.resolve(name, hparams, spec)
        _benchmark()
    except ConfigError as err:
        sys.exit(f"error: {err}")


def _benchmark() -> None:
    image_shape = tuple(int(d) for d in FLAGS.image_shape)
    for num_classes in (int(c) for c in FLAGS.num_classes):
        seconds = time_methods(
            FLAGS.methods, FLAGS.model, FLAGS.batch_size, num_classes, image_shape, FLAGS.rounds, FLAGS.steps
        )
        base = statistics.median(seconds[FLAGS.methods[0]])
        print(
            f"model={FLAGS.model} batch={FLAGS.batch_size} classes={num_classes} image={image_shape} "
            f"steps={FLAGS.rounds}x{FLAGS.steps} per method, {os.cpu_count()} CPUs",
            flush=True,
        )
        origin = provenance.record() if FLAGS.output else None
        body = []
        for spec, values in seconds.items():
            median = statistics.median(values)
            body.append([spec, f"{median:.4f}", f"{median / base:.2f}", f"{(3 + num_classes) / 3:.2f}"])
            if FLAGS.output:
                records.add(
                    FLAGS.output,
                    {
                        "model": FLAGS.model,
                        "method": spec,
                        "num_classes": num_classes,
                        "batch_size": FLAGS.batch_size,
                        "image_shape": list(image_shape),
                        "rounds": FLAGS.rounds,
                        "steps": FLAGS.steps,
                        "median_seconds": median,
                        "ratio": median / base,
                        "baseline": FLAGS.methods[0],
                        "provenance": origin,
                    },
                )
        header = ["method", "median s/step", f"ratio to {FLAGS.methods[0]}", "autodiff floor (3 + C) / 3"]
        print(tables.table(header, body), flush=True)
        del seconds


if __name__ == "__main__":
    app.run(main)
