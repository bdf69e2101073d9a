"""Teacher-free peers: Tf-KD_reg and PS-KD against hand-computed values, their SGD steps against the
written-out losses, PS-KD's per-example store across epochs, a backup and two replicas."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from introspective_tf import methods, models
from introspective_tf.errors import ConfigError
from introspective_tf.methods import pskd, tfkd
from introspective_tf.training import data as data_lib
from introspective_tf.training import resume


def _batch(seed=0, n=6):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, 8, 8, 3)).astype("float32"), rng.integers(0, 4, n).astype("int32")


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_virtual_teacher_by_hand():
    # C = 4, a = 0.99: u = [0.99 on y, 0.01 / 3 elsewhere], q = softmax(u / 20).
    q = tfkd.virtual_teacher(tf.constant([2]), 4, 0.99, 20.0).numpy()[0]
    u = np.array([0.01 / 3, 0.01 / 3, 0.99, 0.01 / 3])
    expected = np.exp(u / 20) / np.exp(u / 20).sum()
    np.testing.assert_allclose(q, expected, rtol=1e-6)
    assert 0.25 < q[2] < 0.27  # nearly uniform, as in the authors' code
    # C = 10, the docstring's number.
    assert abs(tfkd.virtual_teacher(tf.constant([0]), 10, 0.99, 20.0).numpy()[0, 0] - 0.1045) < 5e-4


def test_tfkd_loss_by_hand():
    logits = np.array([[2.0, 0.5, -1.0, 0.0]], "float32")
    method = tfkd.TeacherFreeKD(
        models.small_cnn((8, 8, 3), 4), alpha=0.3, temperature=5.0, correct_probability=0.9, multiplier=8.0
    )
    labels = tf.constant([1])
    q = method.targets(None, labels).numpy()[0]
    p = _softmax(logits[0])
    ce = -np.log(p[1])
    kl_mean_over_classes = np.sum(q * (np.log(q) - np.log(p))) / 4  # PyTorch KLDivLoss(): mean over B * C
    expected = 0.7 * ce + 0.3 * 8.0 * kl_mean_over_classes
    np.testing.assert_allclose(
        method.loss_from_logits(labels, tf.constant(logits), q[None]).numpy(), expected, rtol=1e-5
    )


def test_progressive_target_by_hand():
    previous = tf.constant([[0.1, 0.6, 0.2, 0.1]])
    q = pskd.progressive_target(tf.constant([2]), previous, tf.constant(0.25)).numpy()[0]
    np.testing.assert_allclose(q, [0.025, 0.15, 0.8, 0.025], rtol=1e-6)


def _sgd_step_matches(trainer, backbone, data, expected_loss):
    before = [v.numpy() for v in backbone.trainable_variables]
    with tf.GradientTape() as tape:
        loss = expected_loss() + tf.add_n(backbone.losses)
    expected_grads = tape.gradient(loss, backbone.trainable_variables)
    trainer.train_step(data)
    for old, new, grad in zip(before, backbone.trainable_variables, expected_grads):
        np.testing.assert_allclose(old - new.numpy(), grad, rtol=2e-3, atol=2e-5)


def test_tfkd_one_sgd_step_is_the_gradient_of_the_written_out_loss():
    images, labels = _batch()
    keras.utils.set_random_seed(0)
    backbone = models.small_cnn((8, 8, 3), num_classes=4, weight_decay=1e-3)
    trainer = methods.build("tfkd_reg", backbone, {"alpha": 0.5, "temperature": 2.0, "multiplier": 10.0})
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))

    def loss():
        logits = backbone(images, training=True)
        u = np.full((6, 4), 0.01 / 3, "float32")
        u[np.arange(6), labels] = 0.99
        q = tf.nn.softmax(u / 2.0)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        kl = tf.reduce_sum(q * (tf.math.log(q) - tf.nn.log_softmax(logits)), axis=-1)
        return tf.reduce_mean(0.5 * ce + 0.5 * 10.0 * kl / 4)

    _sgd_step_matches(trainer, backbone, (images, labels), loss)


def test_pskd_one_sgd_step_is_the_gradient_of_the_written_out_loss():
    images, labels = _batch()
    index = np.array([5, 0, 3, 1, 4, 2], "int32")
    keras.utils.set_random_seed(0)
    backbone = models.small_cnn((8, 8, 3), num_classes=4, weight_decay=1e-3)
    trainer = methods.build("pskd", backbone, {"alpha": 0.6})
    trainer.plan(num_train=6, steps_per_epoch=1, epochs=4)
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    trainer.optimizer.build(backbone.trainable_variables)
    stored = _softmax(np.random.default_rng(1).normal(size=(6, 4))).astype("float32")
    trainer.predictions.assign(stored)
    trainer.written.assign(np.ones(6, "float32"))  # every row written in earlier epochs
    trainer.steps_taken.assign(2)  # epoch 2 of 4: a_t = 0.6 * 3 / 4

    def loss():
        logits = backbone(images, training=True)
        target = (1 - 0.45) * np.eye(4, dtype="float32")[labels] + 0.45 * stored[index]
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(target, logits))

    logits_before = backbone(images, training=True)
    _sgd_step_matches(trainer, backbone, ((images, index), labels), loss)
    # The store now holds this step's predictions of these examples.
    np.testing.assert_allclose(
        trainer.predictions.numpy()[index], tf.nn.softmax(logits_before).numpy(), rtol=1e-4, atol=1e-6
    )


def _indexed_pipeline(images, labels, batch_size, seed):
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    return data_lib._train_pipeline(ds, images.shape[1:], batch_size, seed, augment=False, example_index=True)


def test_pskd_learns_each_example_from_its_own_prediction_of_the_previous_epoch():
    """Shuffled pipeline, two epochs, checked per example: epoch 0 learns from the labels and stores each
    example's training-pass prediction; epoch 1's target of example i uses exactly that prediction."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (24, 8, 8, 3)).astype("uint8")
    labels = rng.integers(0, 4, 24).astype("int32")
    keras.utils.set_random_seed(0)
    backbone = models.small_cnn((8, 8, 3), num_classes=4)
    trainer = methods.build("pskd", backbone, {"alpha": 0.8})
    trainer.plan(num_train=24, steps_per_epoch=3, epochs=2)
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
    pipeline = _indexed_pipeline(images, labels, 8, seed=0)
    predicted = {}
    orders = []
    for epoch in range(2):
        order = []
        for (x, index), y in pipeline:
            index = index.numpy()
            order += list(index)
            np.testing.assert_array_equal(x.numpy(), images[index].astype("float32"))  # the index names the example
            np.testing.assert_array_equal(y.numpy(), labels[index])
            logits = backbone(x, training=True)  # what the step's own forward pass computes
            a_t = 0.8 * (epoch + 1) / 2
            previous = np.eye(4)[labels[index]] if epoch == 0 else np.stack([predicted[i] for i in index])
            target = (1 - a_t) * np.eye(4)[labels[index]] + a_t * previous
            expected_loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(target, logits)).numpy()
            trainer.reset_metrics()
            reported = trainer.train_step(((x, tf.constant(index)), y))["loss"].numpy()
            np.testing.assert_allclose(reported, expected_loss, rtol=1e-5)
            predicted.update(zip(index, tf.nn.softmax(logits).numpy()))
        orders.append(order)
        np.testing.assert_allclose(
            trainer.predictions.numpy(), np.stack([predicted[i] for i in range(24)]), rtol=1e-5, atol=1e-7
        )
    assert sorted(orders[0]) == list(range(24)) and orders[0] != orders[1]  # every example once, reshuffled


def test_pskd_store_is_part_of_the_backup(tmp_path):
    images, labels = _batch(n=16)
    index = np.arange(16, dtype="int32")

    def trainer():
        keras.utils.set_random_seed(0)
        t = methods.build("pskd", models.small_cnn((8, 8, 3), num_classes=4))
        t.plan(num_train=16, steps_per_epoch=2, epochs=3)
        t.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
        return t

    trained, backup = trainer(), resume.Backup(str(tmp_path / "backup"))
    dataset = tf.data.Dataset.from_tensor_slices(((images, index), labels)).batch(8)
    trained.fit(dataset, epochs=2, verbose=0, callbacks=[backup])
    backup.on_train_end = lambda logs=None: None  # as after a kill: the backup stays
    backup.on_epoch_end(1, {"loss": 1.0})
    restored = trainer()
    assert resume.Backup(str(tmp_path / "backup")).restore(restored) == 2
    assert np.abs(restored.predictions.numpy() - 0.25).max() > 1e-3  # real predictions, not the initial zeros
    np.testing.assert_array_equal(restored.predictions.numpy(), trained.predictions.numpy())


@pytest.mark.parametrize(
    "name,hparams,message",
    [
        ("pskd", {"alpha": 1.2}, "alpha"),
        ("tfkd_reg", {"temperature": 0.0}, "temperature"),
        ("tfkd_reg", {"correct_probability": 0.0}, "correct_probability"),
        ("tfkd_reg", {"multiplier": -1.0}, "multiplier"),
    ],
)
def test_bad_hyper_parameters_are_config_errors(name, hparams, message):
    with pytest.raises(ConfigError, match=message):
        methods.build(name, models.small_cnn((8, 8, 3), 4), hparams)


def test_pskd_gives_an_example_no_step_has_written_the_label_and_every_target_sums_to_one():
    """An epoch that skips examples (a dropped partial batch, a step cap): an example never written yet
    learns from the label in a later epoch, one written earlier from its stored prediction."""
    images, labels = _batch(n=8)
    keras.utils.set_random_seed(0)
    backbone = models.small_cnn((8, 8, 3), num_classes=4)
    trainer = methods.build("pskd", backbone, {"alpha": 0.8})
    trainer.plan(num_train=8, steps_per_epoch=1, epochs=4)
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))
    seen = np.arange(4, dtype="int32")  # epoch 0 sees only examples 0-3
    trainer.train_step(((images[:4], tf.constant(seen)), labels[:4]))
    stored = trainer.predictions.numpy()
    index = np.array([2, 3, 4, 5], "int32")  # epoch 1: two seen examples, two never written
    targets = trainer.stored_targets(tf.constant(index), tf.constant(labels[index])).numpy()
    a_t = 0.8 * 2 / 4
    onehot = np.eye(4, dtype="float32")[labels[index]]
    expected = (1 - a_t) * onehot + a_t * np.concatenate([stored[[2, 3]], onehot[2:]])
    np.testing.assert_allclose(targets, expected, rtol=1e-6)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)


def test_pskd_counts_every_step_for_its_epoch_also_when_loss_scaling_skips_one():
    """Under mixed_float16 Keras' LossScaleOptimizer does not advance `iterations` on a step it skips for
    overflow; PS-KD's a_t follows the steps it has taken."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        images, labels = _batch(n=4)
        keras.utils.set_random_seed(0)
        trainer = methods.build("pskd", models.small_cnn((8, 8, 3), num_classes=4), {"alpha": 0.8})
        trainer.plan(num_train=4, steps_per_epoch=1, epochs=4)
        trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
        assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
        trainer.optimizer.build(trainer.backbone.trainable_variables)
        trainer.optimizer.dynamic_scale.assign(np.float32(3e38))  # the scaled loss overflows: the step is skipped
        trainer.train_step(((images, tf.constant(np.arange(4, dtype="int32"))), labels))
        assert int(trainer.optimizer.iterations.numpy()) == 0  # Keras did not count the skipped step
        assert int(trainer.steps_taken.numpy()) == 1
        np.testing.assert_allclose(trainer.alpha_t().numpy(), 0.8 * 2 / 4)  # epoch 1
    finally:
        keras.mixed_precision.set_global_policy(previous)
