"""pskd_explained: PS-KD's true-class mass with the wrong classes spread by explanation similarity.

Targets worked out in numpy from explanations computed the plain way (one tape.gradient per class) at
epoch 0 and a later epoch; the per-example store over shuffled epochs that drop examples (every target
sums to 1, an example never seen falls back to the label); one SGD step against the written-out loss;
the store in a backup; 2 replicas = 1; and a real train.py run that exports."""

import json
import os
import subprocess
import sys

import background
import keras
import numpy as np
import pytest
import references
import tensorflow as tf
from conftest import REPO

from introspective_tf import explanations, methods, models
from introspective_tf.errors import ConfigError
from introspective_tf.training import data as data_lib
from introspective_tf.training import resume

C = 4


def _batch(seed=0, n=6):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, 8, 8, 3)).astype("float32"), rng.integers(0, C, n).astype("int32")


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def _gradcam_of_the_training_pass(backbone, images):
    """Grad-CAM written out: one tape.gradient per class w.r.t. the last block's training-mode output."""
    with tf.GradientTape(persistent=True) as tape:
        features, logits = explanations.with_layer_output(backbone, "last_conv_block")(images, training=True)
        per_class = [logits[:, c] for c in range(logits.shape[-1])]
    maps = []
    for z_c in per_class:
        weights = tf.reduce_mean(tape.gradient(z_c, features), axis=[1, 2])  # [B, k]
        maps.append(tf.nn.relu(tf.einsum("bhwk,bk->bhw", features, weights)))
    return tf.stack(maps, axis=1).numpy()


def _explained(backbone, images, explanation):
    if explanation == "gradcam":  # the default: explained from the training pass itself
        return _gradcam_of_the_training_pass(backbone, images)
    return references.per_class_input_gradients_reference(backbone, images).numpy()  # inference mode


def _target_by_hand(explained, labels, previous, epoch, epochs, alpha, tau):
    """numpy: m = (1 - a_t) + a_t p_prev(y) (the label in epoch 0); r = softmax(cos / tau) over c != y."""
    flat = explained.reshape(len(labels), C, -1)
    true = flat[np.arange(len(labels)), labels]  # [B, D]
    cosine = np.einsum("bcd,bd->bc", flat, true) / np.maximum(
        np.linalg.norm(flat, axis=-1) * np.linalg.norm(true, axis=-1)[:, None], 1e-12
    )
    a_t = alpha * (epoch + 1) / epochs
    mass = (1 - a_t) + a_t * (np.ones(len(labels)) if epoch == 0 else previous)
    q = np.zeros((len(labels), C))
    for i, y in enumerate(labels):
        others = [c for c in range(C) if c != y]
        spread = _softmax(cosine[i, others] / tau)
        q[i, y] = mass[i]
        q[i, others] = (1 - mass[i]) * spread
    return q.astype("float32")


def _trainer(hparams=None, num_train=6, steps_per_epoch=1, epochs=4, weight_decay=0.0, learning_rate=1.0):
    keras.utils.set_random_seed(0)
    backbone = models.small_cnn((8, 8, 3), num_classes=C, weight_decay=weight_decay)
    trainer = methods.build("pskd_explained", backbone, hparams or {})
    trainer.plan(num_train=num_train, steps_per_epoch=steps_per_epoch, epochs=epochs)
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate))
    trainer.optimizer.build(backbone.trainable_variables)
    return backbone, trainer


def _target_of_the_method(trainer, images, index, labels):
    """(logits, q) as the training step makes them, before it writes the store."""
    images, index, labels = tf.constant(images), tf.constant(index), tf.constant(labels)
    mass = trainer.stored_true_mass(index, labels)
    logits, q = trainer.training_forward(images, labels, (mass, trainer.targets(images, labels)))
    return logits.numpy(), q.numpy()


@pytest.mark.parametrize("explanation", ["gradcam", "gradient"])
@pytest.mark.parametrize("epoch", [0, 2])
def test_target_by_hand_at_epoch_0_and_a_later_epoch(explanation, epoch):
    images, labels = _batch()
    index = np.array([5, 0, 3, 1, 4, 2], "int32")
    hparams = {"alpha": 0.6, "similarity_temperature": 0.3, "explanation": explanation}
    backbone, trainer = _trainer(hparams)
    stored = np.random.default_rng(1).uniform(0.05, 0.95, 6).astype("float32")  # p_{t-1}(y) of examples 0..5
    trainer.previous_true_probability.assign(stored)
    trainer.optimizer.iterations.assign(epoch)  # one step per epoch: epoch 2 of 4 has a_t = 0.6 * 3 / 4
    expected = _target_by_hand(
        _explained(backbone, images, explanation), labels, stored[index], epoch, 4, alpha=0.6, tau=0.3
    )
    _, q = _target_of_the_method(trainer, images, index, labels)
    np.testing.assert_allclose(q, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-6)
    rows = np.arange(6)
    if epoch == 0:  # no previous predictions yet: the label, whatever the store holds
        np.testing.assert_array_equal(q, np.eye(C, dtype="float32")[labels])
    else:  # PS-KD's true-class mass, exactly
        np.testing.assert_allclose(q[rows, labels], 0.55 + 0.45 * stored[index], rtol=1e-6)
        assert np.all(q[rows, labels] < 1) and np.all(np.delete(q, labels, axis=None) >= 0)


@pytest.mark.parametrize("explanation", ["gradcam", "gradient"])
def test_one_sgd_step_is_the_gradient_of_the_written_out_loss(explanation):
    images, labels = _batch()
    index = np.array([5, 0, 3, 1, 4, 2], "int32")
    hparams = {"alpha": 0.6, "similarity_temperature": 0.3, "explanation": explanation}
    backbone, trainer = _trainer(hparams, weight_decay=1e-3)
    stored = np.random.default_rng(1).uniform(0.05, 0.95, 6).astype("float32")
    trainer.previous_true_probability.assign(stored)
    trainer.optimizer.iterations.assign(2)
    q = _target_by_hand(_explained(backbone, images, explanation), labels, stored[index], 2, 4, alpha=0.6, tau=0.3)

    before = [v.numpy() for v in backbone.trainable_variables]
    moving_statistics = [v.numpy() for v in backbone.non_trainable_variables]
    with tf.GradientTape() as tape:
        logits = backbone(images, training=True)
        loss = tf.reduce_mean(-tf.reduce_sum(q * tf.nn.log_softmax(logits), -1)) + tf.add_n(backbone.losses)
    expected_grads = tape.gradient(loss, backbone.trainable_variables)
    # The step explains (input gradients: in inference mode) before its training pass moves BatchNorm's
    # moving statistics, as q above was: the statistics go back to where they were.
    for variable, value in zip(backbone.non_trainable_variables, moving_statistics):
        variable.assign(value)
    trainer.train_step(((tf.constant(images), tf.constant(index)), tf.constant(labels)))
    for old, new, grad in zip(before, backbone.trainable_variables, expected_grads):
        np.testing.assert_allclose(old - new.numpy(), grad, rtol=2e-3, atol=2e-5)
    # The store now holds this step's training-pass probability of each example's label.
    np.testing.assert_allclose(
        trainer.previous_true_probability.numpy()[index],
        _softmax(logits.numpy())[np.arange(6), labels],
        rtol=1e-4,
        atol=1e-6,
    )
    assert trainer.metrics[-1].name == "target_true_mass"
    np.testing.assert_allclose(trainer.metrics[-1].result().numpy(), q[np.arange(6), labels].mean(), rtol=1e-5)


def test_the_store_over_shuffled_epochs_that_skip_examples():
    """22 examples, batches of 8, the last partial batch dropped: every epoch skips 6, reshuffled. Each
    step's true-class mass is checked per example: the label in epoch 0; afterwards PS-KD's mass from the
    example's latest stored prediction, or the label's (m = 1) for an example no step has seen yet.
    Every target sums to 1."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (22, 8, 8, 3)).astype("uint8")
    labels = rng.integers(0, C, 22).astype("int32")
    _, trainer = _trainer({"alpha": 0.8}, num_train=22, steps_per_epoch=2, epochs=3, learning_rate=0.1)
    pipeline = data_lib._train_pipeline(
        tf.data.Dataset.from_tensor_slices((images, labels)), (8, 8, 3), 8, seed=0, augment=False, example_index=True
    )
    latest, unseen_after_epoch_0 = {}, 0
    for epoch in range(3):
        for (x, index), y in pipeline:
            index = index.numpy()
            a_t = 0.8 * (epoch + 1) / 3
            previous = [latest[i] if epoch > 0 and i in latest else 1.0 for i in index]
            unseen_after_epoch_0 += sum(epoch > 0 and i not in latest for i in index)
            expected_mass = (1 - a_t) + a_t * np.array(previous)
            logits, q = _target_of_the_method(trainer, x.numpy(), index, y.numpy())
            np.testing.assert_allclose(q[np.arange(8), y.numpy()], expected_mass, rtol=1e-6)
            np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-6)
            assert np.all(q >= 0)
            trainer.train_step(((x, tf.constant(index)), y))
            # What the step stored: its own training pass's probability of the label (same weights as above).
            latest.update(zip(index, _softmax(logits)[np.arange(8), y.numpy()]))
            np.testing.assert_allclose(
                trainer.previous_true_probability.numpy()[index], [latest[i] for i in index], rtol=1e-4, atol=1e-6
            )
    assert unseen_after_epoch_0 > 0  # the fallback to the label was exercised
    never_seen = [i for i in range(22) if i not in latest]
    np.testing.assert_array_equal(trainer.previous_true_probability.numpy()[never_seen], 1.0)


def test_the_store_is_part_of_the_backup(tmp_path):
    images, labels = _batch(n=16)
    index = np.arange(16, dtype="int32")

    def trainer():
        keras.utils.set_random_seed(0)
        t = methods.build("pskd_explained", models.small_cnn((8, 8, 3), num_classes=C))
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
    assert np.abs(restored.previous_true_probability.numpy() - 1.0).max() > 1e-3  # predictions, not the initial 1
    np.testing.assert_array_equal(restored.previous_true_probability.numpy(), trained.previous_true_probability.numpy())


class _Mirrored(tf.distribute.MirroredStrategy):
    # Collective keys of its own: a second MirroredStrategy in the same process (tests/test_distribute.py's)
    # that starts from the same keys aborts the collectives of both.
    _collective_key_base = 1000


@pytest.fixture(scope="module")
def mirrored():
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")[:2]]
    if len(cpus) < 2:
        pytest.fail("tests/conftest.py should have split the CPU into 2 logical devices")
    return _Mirrored(cpus)


def _two_steps(strategy, initial, images, labels, explanation):
    with strategy.scope():
        backbone = models.small_cnn((8, 8, 3), num_classes=C, weight_decay=1e-3)
        backbone.set_weights(initial)
        if strategy.num_replicas_in_sync > 1:
            from introspective_tf.training import distribute

            distribute.synchronize_batchnorm(backbone)
        trainer = methods.build("pskd_explained", backbone, {"explanation": explanation})
        trainer.plan(num_train=len(labels), steps_per_epoch=1, epochs=2)
        trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5, momentum=0.9))
    index = np.arange(len(labels), dtype="int32")[::-1].copy()
    dataset = tf.data.Dataset.from_tensor_slices(((images, index), labels)).batch(len(labels))
    trainer.fit(dataset, epochs=2, verbose=0)  # the second step reads what the first stored
    return [w.numpy() for w in backbone.weights], trainer.previous_true_probability.numpy()


@pytest.mark.slow
@pytest.mark.parametrize("explanation", ["gradcam", "gradient"])
def test_two_replicas_equal_one(mirrored, explanation):
    images, labels = _batch(n=16)
    keras.utils.set_random_seed(0)
    initial = models.small_cnn((8, 8, 3), num_classes=C, weight_decay=1e-3).get_weights()
    single = _two_steps(tf.distribute.OneDeviceStrategy("/cpu:0"), initial, images, labels, explanation)
    double = _two_steps(mirrored, initial, images, labels, explanation)
    assert max(np.abs(a - b).max() for a, b in zip(single[0], initial)) > 1e-2  # the steps did something
    assert np.abs(single[1] - 1.0).max() > 1e-3  # and wrote the store
    for a, b in zip(single[0] + [single[1]], double[0] + [double[1]]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "hparams,message",
    [
        ({"alpha": 1.2}, "alpha must be in"),
        ({"similarity_temperature": 0.0}, "similarity_temperature must be > 0"),
        ({"explanation": "lime"}, "explanation must be one of"),
    ],
)
def test_bad_hyper_parameters_are_config_errors(hparams, message):
    with pytest.raises(ConfigError, match=message):
        methods.build("pskd_explained", models.small_cnn((8, 8, 3), C), hparams)


def test_training_without_plan_is_a_config_error():
    images, labels = _batch()
    trainer = methods.build("pskd_explained", models.small_cnn((8, 8, 3), C))
    trainer.compile(optimizer="sgd")
    with pytest.raises(ConfigError, match="needs plan"):
        trainer.train_step(((tf.constant(images), tf.range(6)), tf.constant(labels)))


@background.fixture
def pskd_explained_train_py(tmp_path):
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
        "--method=pskd_explained",
        "--alpha=0.8",
        "--similarity_temperature=0.2",
        "--epochs=2",
        "--batch_size=16",
        "--train_limit=40",  # two steps per epoch, each a reshuffled pass: epoch 1 sees what epoch 0 stored
        f"--output_dir={tmp_path / 'run'}",
        f"--export_dir={tmp_path / 'export'}",
        "--verbose=2",
        "--explanation_images_every=0",  # drawn where it is tested (test_explanation_images.py)
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    return result, tmp_path


@pytest.mark.slow
def test_train_py_trains_and_exports(pskd_explained_train_py):
    result, tmp_path = pskd_explained_train_py
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["method"] == "pskd_explained" and len(results["train_loss_history"]) == 2
    assert results["config"]["hparams"]["alpha"] == 0.8 and results["config"]["hparams"]["explanation"] == "gradcam"
    assert 0 < results["final_train_metrics"]["target_true_mass"] < 1  # epoch 1 learns from a softened target
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    trained = keras.models.load_model(tmp_path / "run" / "model.keras")
    served = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(
        served["probabilities"].numpy(), tf.nn.softmax(trained(images)).numpy(), rtol=1e-4, atol=1e-6
    )
