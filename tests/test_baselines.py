"""Baselines: each loss against values worked out by hand, each train_step against the loss's gradient,
and the teacher's loading and checks."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from introspective_tf import export, methods, models, soft_targets
from introspective_tf import teacher as teacher_lib
from introspective_tf.errors import ConfigError
from introspective_tf.methods.confidence_penalty import confidence_penalty_loss
from introspective_tf.methods.dml import mutual_learning_losses
from introspective_tf.methods.kd import shuffled_non_gt, uniform_non_gt
from introspective_tf.methods.label_smoothing import label_smoothing_loss

LN2 = math.log(2.0)
# softmax(log p) = p: logits with round probabilities make every loss a multiple of ln 2.
HALF_QUARTER_QUARTER = np.log([[0.5, 0.25, 0.25]]).astype("float32")
QUARTER_HALF_QUARTER = np.log([[0.25, 0.5, 0.25]]).astype("float32")


def test_label_smoothing_loss_by_hand():
    # eps = 0.3, C = 3, y = 0: target (0.8, 0.1, 0.1); CE = 0.8 ln 2 + 0.2 ln 4 = 1.2 ln 2.
    loss = label_smoothing_loss(tf.constant([0]), tf.constant(HALF_QUARTER_QUARTER), 0.3)
    assert np.isclose(loss, 1.2 * LN2, rtol=1e-6)
    # eps = 0 is the plain cross-entropy, -ln 0.25 for y = 1.
    assert np.isclose(
        label_smoothing_loss(tf.constant([1]), tf.constant(HALF_QUARTER_QUARTER), 0.0), 2 * LN2, rtol=1e-6
    )


def test_confidence_penalty_loss_by_hand():
    # y = 0: CE = ln 2; H(0.5, 0.25, 0.25) = 0.5 ln 2 + 0.5 ln 4 = 1.5 ln 2; beta = 0.2 -> 0.7 ln 2.
    loss = confidence_penalty_loss(tf.constant([0]), tf.constant(HALF_QUARTER_QUARTER), 0.2)
    assert np.isclose(loss, 0.7 * LN2, rtol=1e-6)


def test_uniform_non_gt_keeps_the_true_response_and_flattens_the_rest():
    p = tf.constant([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    q = uniform_non_gt(p, tf.constant([1, 2])).numpy()
    np.testing.assert_allclose(q, [[0.2, 0.6, 0.2], [0.35, 0.35, 0.3]], rtol=1e-6)


def test_shuffled_non_gt_by_hand():
    p = tf.constant([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    keys = tf.constant([[0.9, 0.1, 0.5, 0.3], [0.5, 0.7, 0.2, 0.1]])
    # Row 1, y = 2: non-GT classes by key are 1, 3, 0 and go to classes 0, 1, 3: q = (p1, p3, p2, p0).
    # Row 2, y = 0: non-GT classes by key are 3, 2, 1 and go to classes 1, 2, 3: q = (p0, p3, p2, p1).
    q = shuffled_non_gt(p, tf.constant([2, 0]), keys).numpy()
    np.testing.assert_allclose(q, [[0.2, 0.4, 0.3, 0.1], [0.4, 0.1, 0.2, 0.3]])


def test_shuffled_non_gt_permutes_only_the_non_gt_responses():
    rng = np.random.default_rng(0)
    p = tf.nn.softmax(rng.normal(size=(64, 10)).astype("float32")).numpy()
    labels = rng.integers(0, 10, 64)
    q = shuffled_non_gt(
        tf.constant(p), tf.constant(labels), tf.constant(rng.uniform(size=(64, 10)).astype("float32"))
    ).numpy()
    rows = np.arange(64)
    np.testing.assert_array_equal(q[rows, labels], p[rows, labels])
    others = lambda a: np.sort(np.where(np.eye(10)[labels] > 0, -1.0, a), axis=-1)  # noqa: E731
    np.testing.assert_array_equal(others(q), others(p))
    moved = (q != p).any(-1).mean()
    assert moved > 0.9  # nine non-GT classes: the identity permutation is rare


def test_mutual_learning_losses_by_hand():
    # p1 = (.5, .25, .25), p2 = (.25, .5, .25), y = 0. KL(p2 || p1) = KL(p1 || p2) = 0.25 ln 2.
    # L1 = ln 2 + 0.25 ln 2; L2 = ln 4 + 0.25 ln 2.
    l1, l2 = mutual_learning_losses(
        tf.constant([0]), [tf.constant(HALF_QUARTER_QUARTER), tf.constant(QUARTER_HALF_QUARTER)]
    )
    assert np.isclose(l1, 1.25 * LN2, rtol=1e-6) and np.isclose(l2, 2.25 * LN2, rtol=1e-6)
    # Three peers: each peer's mimicry term is the mean over the other two.
    l1, _, _ = mutual_learning_losses(
        tf.constant([0]), [tf.constant(HALF_QUARTER_QUARTER)] * 2 + [tf.constant(QUARTER_HALF_QUARTER)]
    )
    assert np.isclose(l1, LN2 + 0.125 * LN2, rtol=1e-6)


def _batch(seed=0, n=6, size=8, classes=4):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, size, size, 3)).astype("float32"), rng.integers(0, classes, n).astype("int32")


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory):
    """A small_cnn teacher (8x8 images, 4 classes) as model.keras and as a SavedModel export."""
    folder = tmp_path_factory.mktemp("teacher")
    keras.utils.set_random_seed(7)
    model = models.small_cnn((8, 8, 3), num_classes=4)
    model.save(folder / "model.keras")
    export.export_classifier(model, str(folder / "export"))
    return model, str(folder / "model.keras"), str(folder / "export")


def test_both_teacher_formats_give_the_same_tempered_distribution(teacher_files):
    model, keras_path, saved_model_path = teacher_files
    images, _ = _batch()
    expected = tf.nn.softmax(model(images, training=False) / 3.0).numpy()
    for path in (keras_path, saved_model_path):
        logits = teacher_lib.load(path, (8, 8, 3), 4)(tf.constant(images))
        np.testing.assert_allclose(tf.nn.softmax(logits / 3.0).numpy(), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kd_target", ["full", "uniform_non_gt", "shuffled_non_gt"])
def test_kd_targets_are_the_teachers_tempered_distribution_or_its_variant(teacher_files, kd_target):
    model, keras_path, _ = teacher_files
    images, labels = _batch()
    kd = methods.build(
        "kd", models.small_cnn((8, 8, 3), 4), {"teacher": keras_path, "temperature": 2.0, "kd_target": kd_target}
    )
    q = kd.targets(tf.constant(images), tf.constant(labels)).numpy()
    p = tf.nn.softmax(model(images, training=False) / 2.0).numpy()
    np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-5)
    if kd_target == "full":
        np.testing.assert_allclose(q, p, rtol=1e-5)
    elif kd_target == "uniform_non_gt":
        np.testing.assert_allclose(q, uniform_non_gt(tf.constant(p), tf.constant(labels)).numpy(), rtol=1e-5)
    else:
        rows = np.arange(len(labels))
        np.testing.assert_allclose(q[rows, labels], p[rows, labels], rtol=1e-5)
        assert not np.allclose(q, p)


def _expected_loss(name, backbone, images, labels, hparams, teacher=None):
    """The method's loss written out from its definition, independent of the Method classes."""
    logits = backbone(images, training=True)
    onehot = tf.one_hot(labels, 4)
    log_p = tf.nn.log_softmax(logits)
    if name == "label_smoothing":
        eps = hparams["smoothing"]
        return -tf.reduce_mean(tf.reduce_sum(((1 - eps) * onehot + eps / 4) * log_p, -1))
    if name == "confidence_penalty":
        entropy = -tf.reduce_sum(tf.exp(log_p) * log_p, -1)
        return tf.reduce_mean(-tf.reduce_sum(onehot * log_p, -1) - hparams["penalty"] * entropy)
    temperature, alpha = hparams["temperature"], hparams["alpha"]  # kd, kd_target=full
    q = tf.nn.softmax(teacher(images, training=False) / temperature)
    kl = tf.reduce_sum(q * (tf.math.log(q) - tf.nn.log_softmax(logits / temperature)), -1)
    return tf.reduce_mean((1 - alpha) * -tf.reduce_sum(onehot * log_p, -1) + alpha * temperature**2 * kl)


@pytest.mark.parametrize(
    "name,hparams",
    [
        ("label_smoothing", {"smoothing": 0.2}),
        ("confidence_penalty", {"penalty": 0.3}),
        ("kd", {"alpha": 0.7, "temperature": 3.0, "kd_target": "full"}),
    ],
)
def test_one_sgd_step_moves_weights_by_the_loss_gradient(teacher_files, name, hparams):
    teacher, keras_path, _ = teacher_files
    images, labels = _batch()
    keras.utils.set_random_seed(0)
    backbone = models.small_cnn((8, 8, 3), num_classes=4, weight_decay=1e-3)
    trainer = methods.build(name, backbone, {**hparams, **({"teacher": keras_path} if name == "kd" else {})})
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    before = [v.numpy() for v in backbone.trainable_variables]

    with tf.GradientTape() as tape:
        loss = _expected_loss(name, backbone, images, labels, hparams, teacher) + tf.add_n(backbone.losses)
    expected_grads = tape.gradient(loss, backbone.trainable_variables)

    teacher_before = [v.numpy() for v in trainer.teacher.source.weights] if name == "kd" else []
    trainer.train_on_batch(images, labels)
    for old, new, grad in zip(before, backbone.trainable_variables, expected_grads):
        np.testing.assert_allclose(old - new.numpy(), grad, rtol=2e-3, atol=2e-5)
    if name == "kd":  # the teacher is frozen: neither trained nor moved by BatchNorm statistics
        assert len(trainer.trainable_variables) == len(backbone.trainable_variables)
        for old, new in zip(teacher_before, trainer.teacher.source.weights):
            np.testing.assert_array_equal(old, new.numpy())


def test_dml_step_moves_each_peer_by_its_own_loss_gradient():
    images, labels = _batch()
    keras.utils.set_random_seed(0)
    backbone = models.small_cnn((8, 8, 3), num_classes=4, weight_decay=1e-3)
    trainer = methods.build("dml", backbone, {"peers": 3})
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    peers = [backbone, *trainer.other_peers]
    assert not np.allclose(peers[0].weights[0].numpy(), peers[1].weights[0].numpy())  # fresh weights per peer
    before = [[v.numpy() for v in p.trainable_variables] for p in peers]

    with tf.GradientTape(persistent=True) as tape:
        probabilities = [tf.nn.softmax(p(images, training=True)) for p in peers]
        losses = []
        for k, p_k in enumerate(probabilities):
            kls = [
                tf.reduce_sum(tf.stop_gradient(p_j) * (tf.math.log(tf.stop_gradient(p_j)) - tf.math.log(p_k)), -1)
                for j, p_j in enumerate(probabilities)
                if j != k
            ]
            ce = -tf.math.log(tf.gather(p_k, labels, batch_dims=1))
            losses.append(tf.reduce_mean(ce + tf.add_n(kls) / 2) + tf.add_n(peers[k].losses))
    expected = [tape.gradient(loss, p.trainable_variables) for loss, p in zip(losses, peers)]

    trainer.train_on_batch(images, labels)
    for peer, old_weights, grads in zip(peers, before, expected):
        for old, new, grad in zip(old_weights, peer.trainable_variables, grads):
            np.testing.assert_allclose(old - new.numpy(), grad, rtol=2e-3, atol=2e-5)


@pytest.mark.parametrize(
    "name,hparams,message",
    [
        ("label_smoothing", {"smoothing": 1.5}, "smoothing"),
        ("confidence_penalty", {"penalty": -1.0}, "penalty"),
        ("kd", {}, "kd needs a teacher"),
        ("kd", {"teacher": "/nonexistent/model.keras"}, "neither a .keras file nor a SavedModel"),
        ("kd", {"kd_target": "random"}, "kd_target"),
        ("dml", {"peers": 1}, "peers"),
    ],
)
def test_bad_hyper_parameters_are_config_errors(name, hparams, message):
    with pytest.raises(ConfigError, match=message):
        methods.build(name, models.small_cnn((8, 8, 3), 4), hparams)


@pytest.mark.parametrize("fmt", ["keras", "saved_model"])
def test_a_teacher_for_other_data_is_a_config_error(teacher_files, fmt):
    _, keras_path, saved_model_path = teacher_files
    path = keras_path if fmt == "keras" else saved_model_path
    with pytest.raises(ConfigError, match="has 4 classes, the data has 10"):
        methods.build("kd", models.small_cnn((8, 8, 3), 10), {"teacher": path})
    with pytest.raises(ConfigError, match=r"takes images of shape \(8, 8, 3\), the data has \(32, 32, 3\)"):
        methods.build("kd", models.small_cnn((32, 32, 3), 4), {"teacher": path})


def test_a_file_that_is_no_model_is_a_config_error(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_text("not a model")
    with pytest.raises(ConfigError, match="cannot load teacher"):
        methods.build("kd", models.small_cnn((8, 8, 3), 4), {"teacher": str(bad)})


def test_distillation_loss_is_the_kd_loss():
    # Guard for kd's reuse of the introspective loss: q = (.5, .25, .25), student p = (.25, .5, .25),
    # T = 1, alpha = 0.5, y = 1: 0.5 * ln 2 + 0.5 * KL = 0.5 ln 2 + 0.125 ln 2.
    loss = soft_targets.distillation_loss(
        tf.constant([1]), tf.constant(QUARTER_HALF_QUARTER), tf.constant([[0.5, 0.25, 0.25]]), 0.5, 1.0
    )
    assert np.isclose(loss, 0.625 * LN2, rtol=1e-6)
