"""tf.distribute: a step on 2 replicas equals the same global batch on 1; a real 2-worker run on loopback."""

import json
import os
import socket
import subprocess
import sys
import tempfile

import background
import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO

from introspective_tf import methods, models
from introspective_tf.errors import ConfigError
from introspective_tf.training import distribute


# Methods whose construction needs more than a backbone (e.g. a teacher) get a factory here.
def _seeded(name):
    """Methods that create weights of their own (DML's other peers) must start alike in both runs."""

    def build(backbone):
        keras.utils.set_random_seed(1)
        return methods.build(name, backbone, {})

    return build


def _kd(backbone):
    """kd with a small_cnn teacher saved once per test session as a .keras file."""
    path = os.path.join(_TEACHER_DIR.name, "teacher.keras")
    if not os.path.exists(path):
        keras.utils.set_random_seed(2)
        models.small_cnn((8, 8, 3), num_classes=4).save(path)
    return methods.build("kd", backbone, {"teacher": path})


_TEACHER_DIR = tempfile.TemporaryDirectory()
METHOD_FACTORIES = {"dml": _seeded("dml"), "kd": _kd}


def _two_cpus():
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < 2:
        pytest.fail("tests/conftest.py should have split the CPU into 2 logical devices")
    return [d.name for d in cpus[:2]]


@pytest.fixture(scope="module")
def mirrored():
    """One strategy for the module: separate MirroredStrategy objects in one process can clash on collective keys."""
    strategy = tf.distribute.MirroredStrategy(_two_cpus())
    assert strategy.num_replicas_in_sync == 2
    return strategy


def _build(name, backbone):
    factory = METHOD_FACTORIES.get(name, lambda b: methods.build(name, b, {}))
    return factory(backbone)


def _one_step(name, strategy, initial_weights, images, labels, sync_batchnorm):
    with strategy.scope():
        backbone = models.small_cnn((8, 8, 3), num_classes=4, weight_decay=1e-3)
        backbone.set_weights(initial_weights)
        if sync_batchnorm:
            distribute.synchronize_batchnorm(backbone)
        trainer = _build(name, backbone)
        trainer.plan(num_train=len(labels), steps_per_epoch=1, epochs=2)
        trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5, momentum=0.9))
    inputs = (images, np.arange(len(labels), dtype="int32")[::-1].copy()) if trainer.needs_example_index else images
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(len(labels))
    trainer.fit(dataset, epochs=2, verbose=0)  # two steps: the second reads what the first stored (PS-KD)
    # Trainable weights, BatchNorm moving statistics and per-example stores (PS-KD's predictions).
    return [w.numpy() for w in backbone.weights] + [
        w.numpy() for w in trainer.non_trainable_weights if w.shape.rank == 2 and w.shape[0] == len(labels)
    ]


def _batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, 8, 8, 3)).astype("float32"), rng.integers(0, 4, n).astype("int32")


# The quick subset keeps introspection and PS-KD (its per-example store is all-gathered); the rest are slow.
# pskd_explained and online_label_smoothing have this test in their own modules (test_two_replicas_equal_one:
# the same construction and steps, pskd_explained on the same batch; with their stores compared as well).
COVERED_ELSEWHERE = ("pskd_explained", "online_label_smoothing")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=() if name in ("introspective", "pskd") else pytest.mark.slow)
        for name in sorted(methods.METHODS)
        if name not in COVERED_ELSEWHERE
    ],
)
def test_two_replicas_step_equals_one_replica_step(name, mirrored):
    devices = _two_cpus()
    images, labels = _batch()
    keras.utils.set_random_seed(0)
    initial = models.small_cnn((8, 8, 3), num_classes=4, weight_decay=1e-3).get_weights()
    single = _one_step(name, tf.distribute.OneDeviceStrategy(devices[0]), initial, images, labels, False)
    double = _one_step(name, mirrored, initial, images, labels, True)
    moved = max(np.abs(a - b).max() for a, b in zip(single, initial))
    assert moved > 1e-2  # the step did something
    for a, b in zip(single, double):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_without_sync_batchnorm_two_replicas_are_different_maths(mirrored):
    """Why BatchNorm is synchronised by default: per-replica batch statistics change the step."""
    devices = _two_cpus()
    images, labels = _batch()
    keras.utils.set_random_seed(0)
    initial = models.small_cnn((8, 8, 3), num_classes=4).get_weights()
    single = _one_step("standard", tf.distribute.OneDeviceStrategy(devices[0]), initial, images, labels, False)
    double = _one_step("standard", mirrored, initial, images, labels, False)
    assert max(np.abs(a - b).max() for a, b in zip(single, double)) > 1e-4


def test_batch_size_must_divide_over_replicas(mirrored):
    with pytest.raises(ConfigError, match="not divisible by the 2 replicas"):
        distribute.check_batch_size(7, mirrored)
    distribute.check_batch_size(8, mirrored)


@pytest.mark.parametrize(
    "name,tpu,message",
    [
        ("horovod", "", "unknown strategy 'horovod'"),
        ("tpu", "", "--strategy=tpu needs --tpu"),
    ],
)
def test_bad_strategy(name, tpu, message):
    with pytest.raises(ConfigError, match=message):
        distribute.make_strategy(name, tpu)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _h5_arrays(path):
    arrays = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, item: arrays.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None)
    return arrays


@background.fixture
def multiworker_run(tmp_path):
    """train.py as two workers of one multi-worker run on loopback, in the background (tests/background.py):
    ([(return code, output) of each worker], the run folder)."""
    from conftest import MINI

    if not (MINI / "train").is_dir():
        pytest.skip("real data not found")
    mini_dataset = f"folder:{MINI}"
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        str(REPO / "train.py"),
        f"--dataset={mini_dataset}",
        "--model=small_cnn",
        "--method=introspective",
        "--strategy=multiworker",
        "--epochs=2",
        "--batch_size=20",
        "--steps_per_epoch=3",
        "--train_limit=100",
        f"--output_dir={run_dir}",
        "--export_dir=none",
        "--verbose=2",
        "--explanation_images_every=0",  # drawn where it is tested (test_explanation_images.py)
    ]
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": tf_config}
        workers.append(
            subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    try:
        outputs = [worker.communicate(timeout=400)[0] for worker in workers]  # bounded: a hang fails the test
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    return [(worker.returncode, output) for worker, output in zip(workers, outputs)], run_dir


@pytest.mark.slow
def test_two_worker_multiworker_training_on_loopback(multiworker_run):
    workers, run_dir = multiworker_run
    for returncode, output in workers:
        assert returncode == 0, output[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["num_replicas"] == 2 and len(results["train_loss_history"]) == 2
    scratch = run_dir / ".workers" / "worker1"
    # Synchronous data parallelism: both workers end with the same weights.
    chief, other = (
        _h5_arrays(run_dir / "checkpoints" / "last.weights.h5"),
        _h5_arrays(scratch / "checkpoints" / "last.weights.h5"),
    )
    assert chief.keys() == other.keys() and len(chief) > 4
    for name in chief:
        np.testing.assert_allclose(chief[name], other[name], rtol=1e-6, atol=1e-6, err_msg=name)
