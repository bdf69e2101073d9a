"""Where training runs: one device, several GPUs, several machines, or a TPU (`tf.distribute`).

Keras' `fit` distributes a `tf.data` dataset by itself when the model and optimizer are built in
`strategy.scope()`; `--batch_size` is the global batch, split evenly over the replicas.

**BatchNorm across replicas.** In training mode BatchNorm normalises with the statistics of the batch
it sees. With N replicas each sees 1/N of the batch, so a step is *not* the same maths as the global
batch on one device. `synchronize_batchnorm` makes every BatchNorm layer all-reduce its statistics
over the replicas (`synchronized=True`), after which a step on N replicas equals a step on one
(tests/test_distribute.py checks it for every method). It is on by default under a multi-replica
strategy; `--nosync_batchnorm` trades that exactness for fewer all-reduces per step.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from introspective_tf.errors import ConfigError

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")


def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """Builds the strategy `name`; call it first, before any other TensorFlow work (multi-worker needs that)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        try:
            json.loads(os.environ.get("TF_CONFIG", "{}"))
        except ValueError:
            raise ConfigError("TF_CONFIG is not valid JSON (see docs/distribution.md for its shape)") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        if not tpu:
            raise ConfigError(
                "--strategy=tpu needs --tpu=NAME (a Cloud TPU name, grpc://ADDRESS, or 'local' on a TPU VM)"
            )
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as err:
            raise ConfigError(f"could not connect to TPU '{tpu}': {str(err).splitlines()[0]}") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ConfigError(f"unknown strategy '{name}': use one of {', '.join(STRATEGIES)}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Only the chief (worker 0 without a chief task) writes the run's files; other workers write to scratch."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
    )


def worker_name(strategy: tf.distribute.Strategy) -> str:
    resolver = strategy.cluster_resolver
    return f"{resolver.task_type}{resolver.task_id}"


def check_batch_size(batch_size: int, strategy: tf.distribute.Strategy) -> None:
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ConfigError(
            f"batch_size {batch_size} is not divisible by the {replicas} replicas of the strategy: "
            f"use a multiple of {replicas}"
        )


def prepare_for_multiworker(model: keras.Model) -> None:
    """Works around two Keras 3 bugs under `MultiWorkerMirroredStrategy` with more than one worker.

    First, before the first step `fit` and `evaluate` call `_maybe_symbolic_build`, which reduces a whole
    (images, labels) batch with `strategy.reduce` and fails with "unsupported type PerReplica" under
    multi-worker collectives (keras-team/keras#20329). That build only creates missing variables; once
    the model, its metrics and its optimizer are built (done here) it has nothing to do, so it is skipped.
    """
    model.optimizer.build(model.trainable_variables)
    if not all(layer.built for layer in model._flatten_layers()):
        raise RuntimeError("build the model before prepare_for_multiworker")
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    # Keras reduces each step's logs over workers with `strategy.reduce("MEAN", value, axis=0)`, which
    # rejects the scalars every step returns; as vectors of one they reduce to the mean over workers.
    model.train_step = _logs_as_vectors(model.train_step)
    model.test_step = _logs_as_vectors(model.test_step)


def _logs_as_vectors(step):
    def step_with_vector_logs(data):
        return {name: tf.reshape(value, [1]) for name, value in step(data).items()}

    return step_with_vector_logs


def synchronize_batchnorm(model: keras.Model) -> int:
    """Makes every BatchNorm layer of `model` (nested models too) use global-batch statistics.

    Keras reads `synchronized` at call time, so this works on a built model before its first traced
    step; it is also saved in the model's config. Returns how many layers were changed.
    """
    changed = 0
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized:
            layer.synchronized = True
            changed += 1
    return changed


def _all_layers(layer):
    yield layer
    for child in getattr(layer, "layers", []):
        yield from _all_layers(child)
