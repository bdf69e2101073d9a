"""online_label_smoothing (Zhang et al., TIP 2021): each class's soft label is the mean prediction of the
previous epoch's correctly classified examples of that class.

The class matrix is worked out in numpy from the predictions of each step's own training pass, epoch by
epoch (a class with no correct example gets the uniform row); each step's reported loss and one SGD step
are checked against the written-out loss; the matrix and its running sums survive a backup (the resumed
run continues exactly as the uninterrupted one); 2 replicas = 1; and a real train.py run exports."""

import json
import os
import subprocess
import sys

import background
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO

from introspective_tf import methods, models
from introspective_tf.errors import ConfigError
from introspective_tf.training import resume

C = 4


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _loss_by_hand(logits, labels, soft_labels, alpha):
    """(1 - alpha) CE(y) + alpha CE(S[y]), written out in numpy."""
    log_p = np.log(_softmax(logits.astype("float64")))
    rows = np.arange(len(labels))
    hard = -log_p[rows, labels]
    soft = -(soft_labels[labels] * log_p).sum(-1)
    return np.mean((1 - alpha) * hard + alpha * soft)


def _matrix_by_hand(predictions):
    """Row c: the mean softmax of the epoch's correctly classified examples of class c; 1/C with none."""
    matrix = np.full((C, C), 1.0 / C)
    for c in range(C):
        rows = [p for p, y in predictions if y == c and np.argmax(p) == c]
        if rows:
            matrix[c] = np.mean(rows, axis=0)
    return matrix


def _trainer(alpha=0.5, steps_per_epoch=2, epochs=3, weight_decay=0.0, learning_rate=0.05):
    keras.utils.set_random_seed(0)
    backbone = models.small_cnn((8, 8, 3), num_classes=C, weight_decay=weight_decay)
    trainer = methods.build("online_label_smoothing", backbone, {"alpha": alpha})
    trainer.plan(num_train=12, steps_per_epoch=steps_per_epoch, epochs=epochs)
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate))
    return backbone, trainer


def _batches(backbone):
    """Two batches of 6; the first batch's labels are the untrained network's own training-pass arg-max,
    so its first step classifies every one of them correctly (some classes have correct examples, and
    with 4 classes usually some have none)."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (12, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, C, 12).astype("int32")
    labels[:6] = np.argmax(backbone(images[:6], training=True).numpy(), -1)
    return [(images[:6], labels[:6]), (images[6:], labels[6:])]


def test_the_class_matrix_and_every_step_loss_by_hand_over_three_epochs():
    backbone, trainer = _trainer(alpha=0.4)
    batches = _batches(backbone)
    expected_matrix = np.zeros((C, C))  # S^0: the authors' code starts from zeros (epoch 0: (1 - alpha) CE(y))
    classes_with_and_without_correct = []
    for epoch in range(3):
        predictions = []
        for images, labels in batches:
            logits = backbone(images, training=True).numpy()  # what the step's own training pass computes
            trainer.reset_metrics()
            reported = trainer.train_step((tf.constant(images), tf.constant(labels)))["loss"].numpy()
            np.testing.assert_allclose(reported, _loss_by_hand(logits, labels, expected_matrix, 0.4), rtol=1e-5)
            # The matrix in use is the previous epoch's, all epoch long.
            np.testing.assert_allclose(trainer.soft_labels.numpy(), expected_matrix, rtol=1e-5, atol=1e-7)
            predictions += list(zip(_softmax(logits), labels))
        counts = [sum(1 for p, y in predictions if y == c and np.argmax(p) == c) for c in range(C)]
        classes_with_and_without_correct.append((sum(n > 0 for n in counts), sum(n == 0 for n in counts)))
        np.testing.assert_array_equal(trainer.correct_counts.numpy(), counts)  # this epoch's running sums
        expected_matrix = _matrix_by_hand(predictions)
    # Both cases happened: rows from correct predictions and the uniform row of a class with none.
    assert any(with_ > 0 for with_, _ in classes_with_and_without_correct)
    assert any(without > 0 for _, without in classes_with_and_without_correct)
    np.testing.assert_allclose(trainer.soft_labels.numpy().sum(-1), 1.0, rtol=1e-5)


def test_a_class_with_no_correct_example_gets_the_uniform_row():
    from introspective_tf.methods.online_label_smoothing import class_soft_labels, correct_prediction_sums

    logits = np.log(np.array([[0.7, 0.1, 0.1, 0.1], [0.2, 0.5, 0.2, 0.1], [0.6, 0.2, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]]))
    labels = np.array([0, 1, 1, 2])  # correct: example 0 (class 0) and example 1 (class 1); 2 and 3 are wrong
    sums, counts = correct_prediction_sums(tf.constant(logits, tf.float32), tf.constant(labels))
    np.testing.assert_array_equal(counts.numpy(), [1, 1, 0, 0])
    matrix = class_soft_labels(sums, counts).numpy()
    np.testing.assert_allclose(
        matrix,
        [[0.7, 0.1, 0.1, 0.1], [0.2, 0.5, 0.2, 0.1], [0.25] * 4, [0.25] * 4],
        rtol=1e-6,
    )


@pytest.mark.parametrize("epoch", [0, 1])
def test_one_sgd_step_is_the_gradient_of_the_written_out_loss(epoch):
    backbone, trainer = _trainer(alpha=0.7, steps_per_epoch=1, weight_decay=1e-3, learning_rate=1.0)
    images, labels = _batches(backbone)[1]
    trainer.optimizer.build(backbone.trainable_variables)
    rng = np.random.default_rng(2)
    # Rows of any sum: the loss is differentiated as written, whatever the matrix holds.
    sums = rng.uniform(0, 3, (C, C)).astype("float32")
    counts = np.array([3, 0, 2, 1], "float32")  # class 1: no correct example, the uniform row
    trainer.correct_sums.assign(sums)
    trainer.correct_counts.assign(counts)
    trainer.optimizer.iterations.assign(epoch)  # epoch 1's first step turns the sums into the matrix
    matrix = np.where(counts[:, None] > 0, sums / np.maximum(counts[:, None], 1), 0.25).astype("float32")
    if epoch == 0:  # S^0 is all zeros: the soft term and its gradient are 0
        matrix = np.zeros((C, C), "float32")

    before = [v.numpy() for v in backbone.trainable_variables]
    with tf.GradientTape() as tape:
        logits = backbone(images, training=True)
        log_p = tf.nn.log_softmax(logits)
        hard = -tf.gather(log_p, labels, batch_dims=1)
        soft = -tf.reduce_sum(matrix[labels] * log_p, -1)
        loss = tf.reduce_mean(0.3 * hard + 0.7 * soft) + tf.add_n(backbone.losses)
    expected_grads = tape.gradient(loss, backbone.trainable_variables)
    trainer.train_step((tf.constant(images), tf.constant(labels)))
    for old, new, grad in zip(before, backbone.trainable_variables, expected_grads):
        np.testing.assert_allclose(old - new.numpy(), grad, rtol=2e-3, atol=2e-5)
    np.testing.assert_allclose(trainer.soft_labels.numpy(), matrix, rtol=1e-6)
    # Epoch 1 starts new sums from this step's predictions; epoch 0 adds them to what it held.
    p = _softmax(logits.numpy())
    correct = np.argmax(p, -1) == labels
    added = np.bincount(labels[correct], minlength=C)
    np.testing.assert_array_equal(trainer.correct_counts.numpy(), added + (counts if epoch == 0 else 0))


def test_the_matrix_and_sums_are_part_of_the_backup(tmp_path):
    backbone, trained = _trainer(learning_rate=0.1)
    batches = _batches(backbone)
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
    ).batch(6)
    backup = resume.Backup(str(tmp_path / "backup"))
    trained.fit(dataset, epochs=2, verbose=0, callbacks=[backup])
    backup.on_train_end = lambda logs=None: None  # as after a kill: the backup stays
    backup.on_epoch_end(1, {"loss": 1.0})
    _, restored = _trainer(learning_rate=0.1)
    assert resume.Backup(str(tmp_path / "backup")).restore(restored) == 2
    state = ("soft_labels", "correct_sums", "correct_counts", "accumulated_epoch")
    assert np.abs(trained.soft_labels.numpy()).max() > 0 and trained.accumulated_epoch.numpy() == 1
    for name in state:
        np.testing.assert_array_equal(getattr(restored, name).numpy(), getattr(trained, name).numpy(), err_msg=name)
    # The resumed run continues as the uninterrupted one: its first step swaps in epoch 1's matrix.
    trained.fit(dataset, epochs=3, initial_epoch=2, verbose=0)
    restored.fit(dataset, epochs=3, initial_epoch=2, verbose=0)
    for name in state:
        np.testing.assert_allclose(getattr(restored, name).numpy(), getattr(trained, name).numpy(), rtol=1e-6)
    for a, b in zip(restored.backbone.weights, trained.backbone.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


class _Mirrored(tf.distribute.MirroredStrategy):
    # Collective keys of its own: a second MirroredStrategy in the same process (tests/test_distribute.py's)
    # that starts from the same keys aborts the collectives of both.
    _collective_key_base = 2000


@pytest.fixture(scope="module")
def mirrored():
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")[:2]]
    if len(cpus) < 2:
        pytest.fail("tests/conftest.py should have split the CPU into 2 logical devices")
    return _Mirrored(cpus)


def _three_epochs(strategy, initial, images, labels):
    with strategy.scope():
        backbone = models.small_cnn((8, 8, 3), num_classes=C, weight_decay=1e-3)
        backbone.set_weights(initial)
        if strategy.num_replicas_in_sync > 1:
            from introspective_tf.training import distribute

            distribute.synchronize_batchnorm(backbone)
        trainer = methods.build("online_label_smoothing", backbone, {})
        trainer.plan(num_train=len(labels), steps_per_epoch=1, epochs=3)
        trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5, momentum=0.9))
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(len(labels))
    trainer.fit(dataset, epochs=3, verbose=0)  # epochs 1 and 2 learn from the matrices of epochs 0 and 1
    state = [trainer.soft_labels, trainer.correct_sums, trainer.correct_counts, trainer.accumulated_epoch]
    return [w.numpy() for w in backbone.weights], [v.numpy() for v in state]


@pytest.mark.slow
def test_two_replicas_equal_one(mirrored):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (16, 8, 8, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    network = models.small_cnn((8, 8, 3), num_classes=C, weight_decay=1e-3)
    initial = network.get_weights()
    labels = np.argmax(network(images, training=True).numpy(), -1).astype("int32")  # correct at first
    labels[::3] = (labels[::3] + 1) % C  # and some wrong
    single = _three_epochs(tf.distribute.OneDeviceStrategy("/cpu:0"), initial, images, labels)
    double = _three_epochs(mirrored, initial, images, labels)
    assert max(np.abs(a - b).max() for a, b in zip(single[0], initial)) > 1e-2  # the steps did something
    assert single[1][2].sum() > 0 and np.abs(single[1][0]).max() > 0  # and accumulated and swapped
    for a, b in zip(single[0] + single[1], double[0] + double[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_bad_alpha_is_a_config_error():
    with pytest.raises(ConfigError, match="alpha must be in"):
        methods.build("online_label_smoothing", models.small_cnn((8, 8, 3), C), {"alpha": 1.5})


@background.fixture
def online_label_smoothing_train_py(tmp_path):
    """train.py with this method, as users run it, in the background (tests/background.py)."""
    from conftest import MINI

    if not (MINI / "train").is_dir():
        pytest.skip("real data not found")
    mini_dataset = f"folder:{MINI}"
    command = [
        sys.executable,
        str(REPO / "train.py"),
        f"--dataset={mini_dataset}",
        "--model=small_cnn",
        "--method=online_label_smoothing",
        "--alpha=0.5",
        "--epochs=2",
        "--batch_size=16",
        "--train_limit=40",
        f"--output_dir={tmp_path / 'run'}",
        f"--export_dir={tmp_path / 'export'}",
        "--verbose=2",
        "--explanation_images_every=0",  # drawn where it is tested (test_explanation_images.py)
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    return result, tmp_path


@pytest.mark.slow
def test_train_py_trains_and_exports(online_label_smoothing_train_py):
    result, tmp_path = online_label_smoothing_train_py
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["method"] == "online_label_smoothing" and len(results["train_loss_history"]) == 2
    assert results["config"]["hparams"] == {"alpha": 0.5}
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    trained = keras.models.load_model(tmp_path / "run" / "model.keras")
    served = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(
        served["probabilities"].numpy(), tf.nn.softmax(trained(images)).numpy(), rtol=1e-4, atol=1e-6
    )
