"""Methods: train_step applies exactly the gradient of the stated loss, with the target held constant; targets
and losses are written out here in numpy and plain TF, not taken from the package."""

import keras
import numpy as np
import pytest
import references
import tensorflow as tf

from introspective_tf import methods, models
from introspective_tf.errors import ConfigError
from introspective_tf.methods.introspective import Introspective


def _batch(seed=0, n=6):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, 8, 8, 3)).astype("float32"), rng.integers(0, 4, n).astype("int32")


# References: every target in numpy (float64) and every loss in plain TF, written out here from the
# methods' definitions (README, "The method in one screen"; the baselines' docstrings and docs/baselines.md).
# Nothing below calls the package's soft-target, similarity, target or loss code; the explanation maps come
# from the per-class references in tests/references.py.


def _log_softmax(logits):
    return logits - tf.reduce_logsumexp(logits, axis=-1, keepdims=True)


def _cross_entropy(target, logits):
    """Per example, -sum_c q_c log softmax(z)_c for a constant target q (numpy)."""
    return -tf.reduce_sum(tf.constant(target, tf.float32) * _log_softmax(logits), axis=-1)


def _kl(target, logits, temperature=1.0):
    """Per example, KL(q || softmax(z / T)) = sum_c q_c log q_c - q_c log softmax(z / T)_c (0 log 0 = 0)."""
    q_log_q = np.sum(np.where(target > 0, target * np.log(np.where(target > 0, target, 1.0)), 0.0), axis=-1)
    return tf.constant(q_log_q, tf.float32) + _cross_entropy(target, logits / temperature)


def _expected_target(name, hparams, backbone, images, labels, teacher=None):
    """q [B, C] as numpy (None for losses without a target)."""
    onehot, classes = np.eye(4)[labels], 4
    if name == "introspective":
        if hparams.get("explanation", "gradcam") == "gradcam":  # explanation_mode=auto -> the training pass itself
            explained = references.per_class_gradcam_reference(backbone, images, training=True)
        else:  # auto -> a separate inference-mode pass
            explained = references.per_class_input_gradients_reference(backbone, images)
        s = references.similarity_to_true_class(explained.numpy(), labels, hparams.get("similarity", "cosine"))
        if hparams.get("target_true_mass"):
            per_example = hparams.get("target_mass_scope") == "example"
            return references.true_mass_target(s, labels, hparams["target_true_mass"], per_example)
        return references.soft_target(
            s, labels, hparams["soft_target"], hparams["similarity_temperature"], hparams.get("epsilon", 0.0)
        )
    if name == "label_smoothing":  # (1 - eps) onehot + eps / C
        return (1 - hparams["smoothing"]) * onehot + hparams["smoothing"] / classes
    if name == "tfkd_reg":  # u = a on y, (1 - a) / (C - 1) elsewhere; q = softmax(u / T)
        a = hparams["correct_probability"]
        u = np.where(onehot > 0, a, (1 - a) / (classes - 1))
        return references.softmax(u / hparams["temperature"])
    if name == "kd":
        if hparams["kd_target"] == "constant_true_mass":  # m on y, (1 - m) / (C - 1) elsewhere
            m = hparams["true_mass"]
            return np.where(onehot > 0, m, (1 - m) / (classes - 1))
        p = references.softmax(teacher(images, training=False).numpy().astype(np.float64) / hparams["temperature"])
        if hparams["kd_target"] == "uniform_non_gt":  # p_y on y, (1 - p_y) / (C - 1) elsewhere
            p_true = p[np.arange(len(labels)), labels][:, None]
            return np.where(onehot > 0, p_true, (1 - p_true) / (classes - 1))
        return p  # full
    return None


def _expected_loss(name, hparams, logits, labels, q):
    """The batch-mean loss of the method, from the logits of the training pass and the constant target q."""
    ce = _cross_entropy(np.eye(4)[labels], logits)
    if name == "standard":
        return tf.reduce_mean(ce)
    if name == "label_smoothing":
        return tf.reduce_mean(_cross_entropy(q, logits))
    if name == "confidence_penalty":  # CE - beta H(softmax(z))
        log_p = _log_softmax(logits)
        entropy = -tf.reduce_sum(tf.exp(log_p) * log_p, axis=-1)
        return tf.reduce_mean(ce - hparams["penalty"] * entropy)
    alpha, temperature = hparams["alpha"], hparams["temperature"]
    if name == "tfkd_reg":  # (1 - alpha) CE + alpha * multiplier * KL(q || softmax(z)) / C: the student unsoftened
        return tf.reduce_mean((1 - alpha) * ce + alpha * hparams["multiplier"] * _kl(q, logits) / 4)
    # introspective and kd: (1 - alpha) CE(y, softmax(z)) + alpha T^2 KL(q || softmax(z / T))
    return tf.reduce_mean((1 - alpha) * ce + alpha * temperature**2 * _kl(q, logits, temperature))


def _check_sgd_step(trainer, backbone, x, labels, expected_loss, learning_rate):
    """One train_on_batch moves every weight by learning_rate times the gradient of expected_loss() plus the
    weight decay, and reports expected_loss()'s value. BatchNorm's moving statistics, which the reference's
    own training-mode passes move, are put back first: the step must see the model as it was."""
    moving = [v.numpy() for v in backbone.non_trainable_variables]
    before = [v.numpy() for v in backbone.trainable_variables]
    with tf.GradientTape() as tape:
        loss = expected_loss()
        total = loss + tf.add_n(backbone.losses)
    expected_grads = tape.gradient(total, backbone.trainable_variables)
    for variable, value in zip(backbone.non_trainable_variables, moving):
        variable.assign(value)
    reported = trainer.train_on_batch(x, labels, return_dict=True)["loss"]
    np.testing.assert_allclose(reported, loss.numpy(), rtol=1e-4)
    for old, new, grad in zip(before, backbone.trainable_variables, expected_grads):
        np.testing.assert_allclose((old - new.numpy()) / learning_rate, grad, rtol=2e-3, atol=2e-5)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A small_cnn teacher for kd, in memory (for the reference) and as the model.keras kd loads."""
    keras.utils.set_random_seed(7)
    model = models.small_cnn((8, 8, 3), num_classes=4)
    path = tmp_path_factory.mktemp("teacher") / "model.keras"
    model.save(path)
    return model, str(path)


# Slow: further parametrisations of maths the quick cases check once (the baselines' losses also in
# test_baselines.py and test_teacher_free.py, against references of their own).
_SLOW = pytest.mark.slow
_INTRO = dict(alpha=0.7, temperature=2.0)


@pytest.mark.parametrize(
    "name,hparams",
    [
        ("standard", {}),
        ("introspective", dict(_INTRO, similarity_temperature=0.5, soft_target="softmax", epsilon=0.1)),
        (
            "introspective",
            dict(alpha=0.6, temperature=1.0, similarity_temperature=0.2, soft_target="smoothing", epsilon=0.3),
        ),
        ("introspective", dict(_INTRO, similarity_temperature=0.5, soft_target="softmax", explanation="gradient")),
        ("introspective", dict(_INTRO, target_true_mass=0.7)),
        pytest.param(
            "introspective",
            dict(_INTRO, target_true_mass=0.8, target_mass_scope="example", similarity="pearson"),
            marks=_SLOW,
        ),
        pytest.param(
            "introspective",
            dict(
                _INTRO, similarity_temperature=0.5, soft_target="softmax", explanation="gradient", similarity="neg_l2"
            ),
            marks=_SLOW,
        ),
        pytest.param("label_smoothing", {"smoothing": 0.2}, marks=_SLOW),
        pytest.param("confidence_penalty", {"penalty": 0.3}, marks=_SLOW),
        pytest.param(
            "tfkd_reg", dict(alpha=0.3, temperature=5.0, correct_probability=0.9, multiplier=8.0), marks=_SLOW
        ),
        ("kd", dict(alpha=0.7, temperature=3.0, kd_target="uniform_non_gt")),
        pytest.param("kd", dict(alpha=0.7, temperature=3.0, kd_target="full"), marks=_SLOW),
        pytest.param(
            "kd", dict(alpha=0.7, temperature=3.0, kd_target="constant_true_mass", true_mass=0.6), marks=_SLOW
        ),
    ],
    ids=lambda value: (",".join(f"{k}={v}" for k, v in value.items()) or "none") if isinstance(value, dict) else value,
)
def test_one_sgd_step_moves_weights_by_the_loss_gradient(teacher, name, hparams):
    images, labels = _batch()
    keras.utils.set_random_seed(0)
    backbone = models.small_cnn((8, 8, 3), num_classes=4, weight_decay=1e-3)
    teacher_model, teacher_path = teacher
    trainer = methods.build(name, backbone, {**hparams, **({"teacher": teacher_path} if name == "kd" else {})})
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    q = _expected_target(name, hparams, backbone, images, labels, teacher_model)
    if q is not None:
        np.testing.assert_allclose(q.sum(-1), 1.0)
    expected = lambda: _expected_loss(name, hparams, backbone(images, training=True), labels, q)  # noqa: E731
    _check_sgd_step(trainer, backbone, images, labels, expected, learning_rate=1.0)


def test_pskd_learns_from_the_label_then_from_each_examples_prediction_of_the_previous_epoch():
    """q_i(t) = (1 - a_t) onehot(y_i) + a_t p_{t-1}(x_i), a_t = alpha (t + 1) / epochs, and the label in epoch 0;
    p_{t-1}(x_i) is example i's softmax in the previous epoch's training pass. One step per epoch over three
    of four epochs, the examples in a new order each epoch."""
    images, labels = _batch()
    keras.utils.set_random_seed(0)
    backbone = models.small_cnn((8, 8, 3), num_classes=4, weight_decay=1e-3)
    trainer = methods.build("pskd", backbone, {"alpha": 0.6})
    trainer.plan(num_train=6, steps_per_epoch=1, epochs=4)
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
    previous = np.eye(4)[labels]  # epoch 0: no previous predictions, the target is the label
    for epoch, order in enumerate([[5, 0, 3, 1, 4, 2], [2, 4, 0, 5, 1, 3], [1, 3, 5, 0, 2, 4]]):
        a_t = 0.6 * (epoch + 1) / 4
        q = (1 - a_t) * np.eye(4)[labels[order]] + a_t * previous[order]
        predictions = references.softmax(backbone(images[order], training=True).numpy().astype(np.float64))

        def expected():
            return tf.reduce_mean(_cross_entropy(q, backbone(images[order], training=True)))

        x = (images[order], np.array(order, "int32"))  # (images, example index)
        _check_sgd_step(trainer, backbone, x, labels[order], expected, learning_rate=0.1)
        previous = np.empty_like(previous)
        previous[order] = predictions


def test_kd_shuffled_target_is_the_teachers_with_its_wrong_class_responses_permuted(teacher):
    teacher_model, teacher_path = teacher
    images, labels = _batch(n=32)
    kd = methods.build(
        "kd",
        models.small_cnn((8, 8, 3), 4),
        {"teacher": teacher_path, "temperature": 3.0, "kd_target": "shuffled_non_gt"},
    )
    q = kd.targets(tf.constant(images), tf.constant(labels)).numpy()
    p = references.softmax(teacher_model(images, training=False).numpy().astype(np.float64) / 3.0)
    permuted = 0
    for q_row, p_row, y in zip(q, p, labels):
        others = [c for c in range(4) if c != y]
        assert q_row[y] == pytest.approx(p_row[y], rel=1e-5)
        np.testing.assert_allclose(np.sort(q_row[others]), np.sort(p_row[others]), rtol=1e-5)
        permuted += not np.allclose(q_row[others], p_row[others], rtol=1e-5)
    assert permuted > len(labels) / 2  # three wrong classes: the identity is one permutation of six


def test_introspective_target_is_a_distribution_peaked_on_the_label():
    images, labels = _batch()
    backbone = models.small_cnn((8, 8, 3), num_classes=4)
    q = Introspective(backbone, similarity_temperature=0.1, explanation="gradient").targets(images, labels).numpy()
    np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-5)
    assert np.all(q.argmax(-1) == labels)  # s_y = 1 is the largest cosine


def test_test_step_reports_backbone_cross_entropy_and_accuracy():
    images, labels = _batch(n=8)
    backbone = models.small_cnn((8, 8, 3), num_classes=4)
    trainer = methods.build("introspective", backbone)
    trainer.compile(optimizer="sgd")
    result = trainer.evaluate(images, labels, verbose=0, return_dict=True)
    logits = backbone(images, training=False)
    ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    assert np.isclose(result["loss"], ce, rtol=1e-5)
    assert np.isclose(result["accuracy"], np.mean(np.argmax(logits, -1) == labels))


@pytest.mark.parametrize(
    "hparams,message",
    [
        ({"alpha": 1.5}, "alpha"),
        ({"temperature": 0.0}, "temperature"),
        ({"similarity_temperature": -1.0}, "similarity_temperature"),
        ({"soft_target": "uniform"}, "soft_target"),
        ({"epsilon": 2.0}, "epsilon"),
    ],
)
def test_bad_hyper_parameters_are_config_errors(hparams, message):
    with pytest.raises(ConfigError, match=message):
        methods.build("introspective", models.small_cnn((8, 8, 3), 4), hparams)


def test_unknown_method():
    with pytest.raises(ConfigError, match="unknown method"):
        methods.build("teacher_free", models.small_cnn((8, 8, 3), 4))


def test_every_hyper_parameter_is_a_run_flag_that_unset_leaves_the_method_default():
    from absl import flags

    from introspective_tf.training import run_flags

    flag_values = flags.FlagValues()
    run_flags.define_run_flags(flag_values)
    declared = {name for cls in methods.METHODS.values() for name in cls.hyperparameters()}
    assert declared <= set(flag_values) and all(flag_values[name].default is None for name in declared)
    config = run_flags.parse_run_line(["--method=kd", "--alpha=0.9"], "a test")
    assert config.method == "kd" and config.hparams == {"alpha": 0.9}
    resolved = methods.resolve("kd", config.hparams)
    assert (
        resolved["alpha"] == 0.9
        and resolved["temperature"] == methods.get("kd").hyperparameters()["temperature"].default
    )
    with pytest.raises(ConfigError, match="a test: flag --num_probes=2.5"):
        run_flags.parse_run_line(["--num_probes=2.5"], "a test")


@pytest.mark.parametrize("name", sorted(methods.METHODS))
def test_every_hyperparameter_is_declared_once_with_a_type_default_and_help(name):
    for key, declared in methods.get(name).hyperparameters().items():
        assert declared.type in (float, int, str, bool) and isinstance(declared.default, declared.type), key
        assert len(declared.help) > 10 and not declared.help.endswith(":"), (name, key, declared.help)
    assert methods.resolve(name) == {k: h.default for k, h in methods.get(name).hyperparameters().items()}


def test_hyperparameters_resolve_with_casts_and_reject_unknown_keys():
    assert methods.resolve("kd", {"alpha": "0.25", "temperature": 2})["temperature"] == 2.0
    assert methods.get("kd").hyperparameters()["kd_target"].help.endswith("(shuffled_non_gt).")  # continuation line
    with pytest.raises(ConfigError, match="method 'standard' takes no hyper-parameter 'alpha' \\(it takes: none\\)"):
        methods.resolve("standard", {"alpha": 0.5})
    with pytest.raises(ConfigError, match="num_probes=2.5 is not a valid int"):
        methods.resolve("introspective", {"num_probes": 2.5})
    flags = methods.all_hyperparameters()
    assert flags["alpha"][0] is float and "kd:" in flags["alpha"][1] and "introspective:" in flags["alpha"][1]
