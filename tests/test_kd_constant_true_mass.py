"""kd_target=constant_true_mass: uniform_non_gt's target with one true-class mass for every example (the
control that separates the level of the teacher's true-class response from its per-example variation).
Targets worked out by hand in numpy, a step against the written-out loss, and the one-line errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from introspective_tf import methods, models
from introspective_tf.errors import ConfigError


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory):
    keras.utils.set_random_seed(7)
    path = tmp_path_factory.mktemp("teacher") / "model.keras"
    models.small_cnn((8, 8, 3), num_classes=4).save(path)
    return str(path)


def _batch(seed=0, n=6):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, 8, 8, 3)).astype("float32"), rng.integers(0, 4, n).astype("int32")


def _by_hand(labels, m, num_classes):
    """m on the label, (1 - m) / (C - 1) on each other class, written out row by row."""
    rows = []
    for y in labels:
        row = [(1.0 - m) / (num_classes - 1)] * num_classes
        row[y] = m
        rows.append(row)
    return np.array(rows, "float32")


def test_target_by_hand_and_it_sums_to_one(teacher_path):
    images, labels = _batch()
    kd = methods.build(
        "kd",
        models.small_cnn((8, 8, 3), 4),
        {"teacher": teacher_path, "kd_target": "constant_true_mass", "true_mass": 0.615, "temperature": 4.0},
    )
    q = kd.targets(tf.constant(images), tf.constant(labels)).numpy()
    # C = 4, m = 0.615: 0.615 on the label and 0.385 / 3 = 0.128333... on each of the other three.
    np.testing.assert_allclose(q, _by_hand(labels, 0.615, 4), rtol=1e-6)
    assert q[0, labels[0]] == pytest.approx(0.615) and q[0, (labels[0] + 1) % 4] == pytest.approx(0.385 / 3)
    np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-6)
    # The same for every example, whatever the images: the teacher's prediction plays no part.
    other_images, _ = _batch(seed=1)
    np.testing.assert_array_equal(kd.targets(tf.constant(other_images), tf.constant(labels)).numpy(), q)


def test_ten_classes_sum_to_one(teacher_path):
    # C = 10 (a 10-class backbone takes no 4-class teacher: the function itself).
    from introspective_tf.methods.kd import constant_true_mass

    labels = np.array([0, 9, 3], "int32")
    q = constant_true_mass(tf.constant(labels), 10, 0.615).numpy()
    np.testing.assert_allclose(q, _by_hand(labels, 0.615, 10), rtol=1e-6)
    np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-6)


def test_one_sgd_step_moves_weights_by_the_loss_gradient(teacher_path):
    images, labels = _batch()
    keras.utils.set_random_seed(0)
    backbone = models.small_cnn((8, 8, 3), num_classes=4, weight_decay=1e-3)
    hparams = {"teacher": teacher_path, "alpha": 0.9, "temperature": 4.0}
    trainer = methods.build("kd", backbone, {**hparams, "kd_target": "constant_true_mass", "true_mass": 0.6})
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    before = [v.numpy() for v in backbone.trainable_variables]
    q = _by_hand(labels, 0.6, 4)

    with tf.GradientTape() as tape:
        logits = backbone(images, training=True)
        ce = -tf.reduce_sum(np.eye(4, dtype="float32")[labels] * tf.nn.log_softmax(logits), -1)
        kl = tf.reduce_sum(q * (np.log(q) - tf.nn.log_softmax(logits / 4.0)), -1)
        loss = tf.reduce_mean(0.1 * ce + 0.9 * 16.0 * kl) + tf.add_n(backbone.losses)
    expected = tape.gradient(loss, backbone.trainable_variables)

    trainer.train_on_batch(images, labels)
    for old, new, grad in zip(before, backbone.trainable_variables, expected):
        np.testing.assert_allclose(old - new.numpy(), grad, rtol=2e-3, atol=2e-5)


@pytest.mark.parametrize(
    "hparams,message",
    [
        ({"kd_target": "constant_true_mass"}, "kd_target=constant_true_mass needs true_mass"),
        ({"kd_target": "constant_true_mass", "true_mass": 1.0}, "needs true_mass in"),
        ({"kd_target": "constant_true_mass", "true_mass": 0.2}, "needs true_mass in"),  # below 1/C = 0.25
        ({"kd_target": "uniform_non_gt", "true_mass": 0.6}, "true_mass is used only with kd_target=constant"),
    ],
)
def test_bad_settings_are_one_line_config_errors(teacher_path, hparams, message):
    with pytest.raises(ConfigError, match=message) as error:
        methods.build("kd", models.small_cnn((8, 8, 3), 4), {"teacher": teacher_path, **hparams})
    assert "\n" not in str(error.value)


def test_the_other_targets_resolve_true_mass_to_its_unset_default():
    assert methods.resolve("kd", {"kd_target": "uniform_non_gt"})["true_mass"] == 0.0
